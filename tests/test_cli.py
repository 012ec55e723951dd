"""Errors reach the user as one line, also when a DataLoader worker raised them."""
from disentangle import cli
from disentangle.core.errors import UserError


def test_worker_error_is_one_line(capsys):
    @cli.entrypoint
    def main(argv=None):
        raise UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                        "  File \"x.py\", line 1\ndisentangle.core.errors.UserError: cannot read image a/b.jpg: truncated\n")

    assert main([]) == 2
    assert capsys.readouterr().err == "error: cannot read image a/b.jpg: truncated\n"
