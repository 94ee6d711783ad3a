"""Reading configuration: field checks that report every problem, durations and rates, and files
written whole or not at all."""
