"""Alpaca Trading API v2: connector, stream, mapping, wire records, errors, fill ledger."""
