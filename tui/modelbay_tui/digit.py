"""A pixel grid to draw a digit with the keyboard (arrows, space) or the mouse (click, drag)."""

from __future__ import annotations

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

# Example digits, 8x8 like scikit-learn's load_digits (which the demo CNN learnt): bright ink on a dark ground.
EXAMPLES = {
    "0": ["..####..", ".##..##.", ".##..##.", ".##..##.", ".##..##.", ".##..##.", "..####..", "........"],
    "1": ["...##...", "..###...", "...##...", "...##...", "...##...", "...##...", "..####..", "........"],
    "2": ["..####..", ".##..##.", ".....##.", "....##..", "...##...", "..##....", ".######.", "........"],
    "3": ["..####..", ".##..##.", ".....##.", "...###..", ".....##.", ".##..##.", "..####..", "........"],
    "4": ["....##..", "...###..", "..#.##..", ".#..##..", ".######.", "....##..", "....##..", "........"],
    "5": [".######.", ".##.....", ".#####..", ".....##.", ".....##.", ".##..##.", "..####..", "........"],
    "6": ["...###..", "..##....", ".##.....", ".#####..", ".##..##.", ".##..##.", "..####..", "........"],
    "7": [".######.", ".....##.", "....##..", "...##...", "...##...", "..##....", "..##....", "........"],
    "8": ["..####..", ".##..##.", ".##..##.", "..####..", ".##..##.", ".##..##.", "..####..", "........"],
    "9": ["..####..", ".##..##.", ".##..##.", "..#####.", ".....##.", "....##..", "..###...", "........"],
}


class DigitGrid(Widget, can_focus=True):
    BINDINGS = [
        Binding("up", "move(0,-1)", "Up", show=False),
        Binding("down", "move(0,1)", "Down", show=False),
        Binding("left", "move(-1,0)", "Left", show=False),
        Binding("right", "move(1,0)", "Right", show=False),
        Binding("space", "ink", "Ink"),
        Binding("x", "clear", "Clear"),
    ]
    COMPONENT_CLASSES = {"digit--ink", "digit--blank", "digit--cursor"}
    DEFAULT_CSS = """
    DigitGrid { width: auto; height: auto; border: round $primary; }
    DigitGrid:focus { border: round $accent; }
    DigitGrid > .digit--ink { color: $foreground; }
    DigitGrid > .digit--blank { color: $foreground-muted; }
    DigitGrid > .digit--cursor { color: $warning; text-style: bold; }
    """
    cursor = reactive((0, 0))

    def __init__(self, rows: int = 8, cols: int = 8, max_value: int = 16, **kw) -> None:
        super().__init__(**kw)
        self.rows, self.cols, self.max_value = rows, cols, max_value
        self.cells = [[0] * cols for _ in range(rows)]
        self._painting: int | None = None

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self.cols * 2

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.rows

    def render_line(self, y: int) -> Strip:
        # ink is drawn with glyphs, not only colour, so it reads on monochrome terminals and in text captures
        if y >= self.rows:
            return Strip.blank(self.size.width)
        ink = self.get_component_rich_style("digit--ink")
        blank = self.get_component_rich_style("digit--blank")
        cursor = self.get_component_rich_style("digit--cursor")
        segs = []
        for x in range(self.cols):
            on = self.cells[y][x]
            here = self.has_focus and (x, y) == self.cursor
            text = ("▐▌" if here else "██") if on else ("[]" if here else "· ")
            segs.append(Segment(text, cursor if here else (ink if on else blank)))
        return Strip(segs, self.cols * 2)

    def resize(self, rows: int, cols: int, max_value: int) -> None:
        self.rows, self.cols, self.max_value = rows, cols, max_value
        self.cells = [[0] * cols for _ in range(rows)]
        self.cursor = (0, 0)
        self.refresh(layout=True)

    def values(self) -> list[list[int]]:
        return [[self.max_value if c else 0 for c in row] for row in self.cells]

    def set_pattern(self, rows: list[str]) -> None:
        """For tests and demos: '#' is ink."""
        for y, row in enumerate(rows[: self.rows]):
            for x, ch in enumerate(row[: self.cols]):
                self.cells[y][x] = int(ch == "#")
        self.refresh()

    @property
    def empty(self) -> bool:
        return not any(any(row) for row in self.cells)

    def draw_example(self, digit: str) -> None:
        """One of ``EXAMPLES``, scaled to this grid."""
        src = EXAMPLES[digit]
        rows = [
            "".join(src[y * len(src) // self.rows][x * len(src[0]) // self.cols] for x in range(self.cols))
            for y in range(self.rows)
        ]
        self.set_pattern(rows)

    def action_move(self, dx: int, dy: int) -> None:
        x, y = self.cursor
        self.cursor = ((x + dx) % self.cols, (y + dy) % self.rows)

    def action_ink(self) -> None:
        x, y = self.cursor
        self.cells[y][x] ^= 1
        self.refresh()

    def action_clear(self) -> None:
        self.cells = [[0] * self.cols for _ in range(self.rows)]
        self.refresh()

    def watch_cursor(self) -> None:
        self.refresh()

    def _cell(self, event: events.MouseEvent) -> tuple[int, int] | None:
        x, y = event.x // 2, event.y
        return (x, y) if 0 <= x < self.cols and 0 <= y < self.rows else None

    def on_mouse_down(self, event: events.MouseDown) -> None:
        if cell := self._cell(event):
            x, y = cell
            self._painting = self.cells[y][x] ^ 1
            self.cells[y][x] = self._painting
            self.cursor = cell
            self.capture_mouse()
            self.refresh()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self._painting is not None and (cell := self._cell(event)):
            x, y = cell
            self.cells[y][x] = self._painting
            self.refresh()

    def on_mouse_up(self, event: events.MouseUp) -> None:
        self._painting = None
        self.release_mouse()
