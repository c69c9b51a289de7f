"""Commands that behave as Unix tools: exit 0 on success, 1 with one line naming the problem, 130 on Ctrl-C.

Every console script (`nomic-bert-export`, ...) and every script of the repository runs its `main` through
`run_command`. `main` may return what it made (the tests call it in-process and use it); the exit status ignores it.
Set `NOMIC_BERT_HF_TRACEBACK=1` to see the traceback above the error line.
"""

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

TRACEBACK_VARIABLE = "NOMIC_BERT_HF_TRACEBACK"
INTERRUPTED = 130  # the shell's status for a command ended by SIGINT (128 + 2)


def error_line(error: BaseException) -> str:
    """One line: the error's message (or its type when it has none) and, when it was raised from another error, the
    cause's type and first line."""
    def first_line(exception: BaseException) -> str:
        text = str(exception).strip()
        return text.splitlines()[0] if text else type(exception).__name__

    line = first_line(error)
    cause = error.__cause__
    if cause is not None and first_line(cause) not in line:
        line += f" (caused by {type(cause).__name__}: {first_line(cause)})"
    return line


def run_command(main: Callable[[], object], prog: str | None = None) -> NoReturn:
    """Run `main()` and exit: 0 when it returns, 130 on KeyboardInterrupt, and 1 after printing
    `<prog>: error: <message>` on any other exception (usage errors keep argparse's status 2)."""
    prog = prog or Path(sys.argv[0]).name
    try:
        main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - a command reports every failure the same way
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            traceback.print_exc()
        sys.stdout.flush()
        print(f"{prog}: error: {error_line(error)}", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(0)


def console_command(main: Callable[[], object], prog: str) -> Callable[[], NoReturn]:
    """The entry point `pyproject.toml` names for a console script: `main` run by `run_command` as `prog`."""
    def command() -> NoReturn:
        run_command(main, prog)

    command.__doc__ = f"`{prog}`: {main.__doc__ or main.__module__}"
    return command
