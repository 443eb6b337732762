"""The console the benchmark prints to, its progress log, and :class:`Section`: one table
that shows itself on the console and renders itself as Markdown."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

__all__ = ["Section", "console", "log"]

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def log(msg: str) -> None:
    """One dim progress line, prefixed with the time of day."""
    console.print(f"[dim]{time.strftime('%H:%M:%S')}  {msg}[/dim]")


@dataclass
class Section:
    """One table with its title and the paragraph that explains it.

    Examples
    --------
    >>> sec = Section("Demo", "What it shows.", ["case", "µs"], [["a|b", "1.0"]], ["a note"])
    >>> print(sec.markdown(), end="")
    ## Demo
    <BLANKLINE>
    What it shows.
    <BLANKLINE>
    | case | µs |
    |:---|---:|
    | a\\|b | 1.0 |
    <BLANKLINE>
    - a note
    """

    title: str
    intro: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def show(self) -> None:
        """Print the table, then its notes, on :data:`console`."""
        table = Table(title=self.title, title_justify="left", title_style="bold")
        for k, h in enumerate(self.headers):
            table.add_column(h, justify="left" if k == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        console.print()
        console.print(table)
        for note in self.notes:
            console.print(f"  {note}", style="dim")

    def markdown(self) -> str:
        """The section as Markdown: heading, intro, table, notes as a list."""
        out = [f"## {self.title}", "", self.intro, ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "|".join([":---"] + ["---:"] * (len(self.headers) - 1)) + "|")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"
