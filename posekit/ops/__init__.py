"""Pre- and post-processing as plain numpy functions: no runtime imported here."""
