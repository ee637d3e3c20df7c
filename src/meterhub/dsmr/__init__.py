"""The smart-meter side of meterhub: DSMR P1 telegrams, the meter, and DSMR-reader's rules.

- `fields`: the meter's fields as channels (DSMR-reader's names, units and kinds);
- `telegram`: a telegram's text -> its readings and status (dialects, CRC, the meter's
  clock), with `line_index` (dsmr-parser's parse, each line looked up once);
- `meter_log`: the meter's latest status and its count of rejected telegrams;
- `parse_helper`: pushed telegrams parsed in a helper process under load;
- `p1`: a meter's serial port, or a capture file replayed;
- `statistics`: DSMR-reader's hour and day statistics; `prices`: its contracts and costs;
- `settings`: the ``[dsmr]`` section of meterhub.toml.

It builds on the model (`meterhub.model`, units, errors) and the `Hub`; the API paths that
answer like DSMR-reader are `meterhub.api.dsmr_reader`, the pull connector for a remote
DSMR-reader `meterhub.sources.dsmr_reader`.
"""
