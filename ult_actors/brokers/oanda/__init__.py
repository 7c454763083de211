"""OANDA v20: connector, stream, mapping, wire records, errors, settings."""
