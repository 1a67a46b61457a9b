"""Operator tools run from a checkout against a deployed hub or `make run`'s emulator (not packaged
into any Lambda). `python -m ops.dlq --help` inspects and redrives the dead-letter queues."""
