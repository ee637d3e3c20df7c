"""The smart-meter side of meterhub: DSMR P1 telegrams, the meter, and DSMR-reader's rules."""
