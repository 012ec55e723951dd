"""The one exception type that means "the user asked for something we cannot do"."""


class UserError(Exception):
    """Bad input (missing data, unknown model, out-of-range flag, mismatched artifact).

    Scripts print its message as one line on stderr and exit non-zero; nothing is written first.
    """
