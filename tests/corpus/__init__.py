"""The bad-input corpus: one set of hostile values (`values`) fed to every write and read
path (REST, the DSMR-reader paths, the CLI), each case checked for a 4xx (or exit code)
that says what is wrong, an unchanged store, and reads that still answer."""
