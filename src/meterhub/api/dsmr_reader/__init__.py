"""The DSMR-reader-compatible API paths, answering as DSMR-reader 5.11 does."""
