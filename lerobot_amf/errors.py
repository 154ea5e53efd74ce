"""Errors the CLI reports as one clear line (bad input from the user, nothing written)."""


class AMFInputError(ValueError):
    """Bad input: names the bad value and the allowed ones."""
