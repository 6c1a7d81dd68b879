"""What every explorer shares: the widget box, PNG rendering, and the static fallback.

An explorer is a plain matplotlib ``Figure`` rendered to PNG bytes in an ``ipywidgets.Image``;
moving a control recomputes and replaces the bytes. Without a widget frontend the display bundle
carries ``image/png`` and a text summary next to the widget view. See :mod:`.explorers`.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Sequence

import ipywidgets as widgets
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..attention import attention_entropy
from ..data.toy import FEATURES

__all__ = ["Explorer", "DPI"]


#: Resolution of every explorer figure (dots per inch), as the lessons' ``figure.dpi``.
DPI = 80
#: The d_k values offered by the sliders (7 = the hand-made features of course_lib.data.toy, unprojected).
D_K_CHOICES = (1, 2, 4, 7, 8, 16, 32, 64, 128, 256, 512)
_HAND_MADE = len(FEATURES)  # 7 hand-made features


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (a frontend may render widgets); False in a plain shell."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _png(figure: Figure) -> bytes:
    """Render a figure to PNG bytes with a 256-colour palette (about a third of the size of RGBA).

    The bytes go into the widget and, once, into the saved notebook: small keeps notebooks light.
    """
    from PIL import Image  # Pillow comes with matplotlib

    canvas = figure.canvas
    canvas.draw()
    width, height = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    image = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _entropy(weights: torch.Tensor) -> float:
    """Entropy in nats of a weight vector (for display); 0 * log 0 counts as 0."""
    return float(attention_entropy(weights.reshape(-1)))


class Explorer(widgets.VBox):
    """An explorer: a row of controls, a status line with the numbers, and the figure.

    Subclasses define ``_compute(**values) -> dict`` (the numbers, from course_lib's functions),
    ``_draw(figure, result)`` and ``_describe(result) -> list[str]``. Every change of a control's
    value recomputes, redraws the figure into :attr:`image` (PNG bytes) and rewrites
    :attr:`status`. A bad input (a word without a vector, an unparsable logit) leaves the last
    figure in place and shows the error in the status line.

    Attributes:
        controls: dict name -> the ipywidgets control.
        image: ``ipywidgets.Image`` holding the current figure as PNG bytes.
        status: ``ipywidgets.HTML`` with the numbers the figure shows.
        figure: the matplotlib ``Figure`` drawn into (not a pyplot figure).
        result: the dict of the last successful computation.
        error: the last error message, or None.
    """

    figsize = (8.0, 3.0)

    def __init__(self, controls: dict, rows: Sequence[Sequence[str]]):
        self.controls = dict(controls)
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.status = widgets.HTML(layout=widgets.Layout(margin="0 0 0 8px"))
        self.figure = Figure(figsize=self.figsize, dpi=DPI)
        FigureCanvasAgg(self.figure)
        self.result: dict | None = None
        self.error: str | None = None
        self.lines: list[str] = []
        self._busy = False
        boxes = [widgets.HBox([self.controls[name] for name in row]) for row in rows if row]
        super().__init__(children=[*boxes, self.status, self.image])
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.update()

    # -- subclasses -------------------------------------------------------------------------
    def _compute(self, **values) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw(self, figure: Figure, result: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _describe(self, result: dict) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sync_controls(self) -> None:
        """Adjust controls that depend on others (options, ranges); called before computing."""

    # -- machinery --------------------------------------------------------------------------
    def values(self) -> dict:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, change) -> None:
        self.update()

    def update(self) -> None:
        """Recompute from the controls, redraw the figure and rewrite the status line."""
        if self._busy:
            return
        self._busy = True
        try:
            self._sync_controls()
            try:
                result = self._compute(**self.values())
            except (ValueError, TypeError) as err:
                self.error = str(err)
                self.status.value = f'<span style="color:#b00020">{html.escape(self.error)}</span>'
                return
            self.error = None
            self.result = result
            self.figure.clear()
            self._draw(self.figure, result)
            self.image.value = _png(self.figure)
            self.lines = self._describe(result)
            self.status.value = "<br>".join(html.escape(line) for line in self.lines)
        finally:
            self._busy = False

    def summary(self) -> str:
        """The status line as plain text (what a text-only frontend shows)."""
        return "\n".join([type(self).__name__ + ":", *("  " + line for line in self.lines)])

    def _repr_mimebundle_(self, **kwargs):
        # The widget view for a live frontend, and its current state as a PNG and as text for
        # everything else: nbval, nbconvert (HTML export), a notebook opened without a kernel.
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        bundle["text/plain"] = self.summary()
        return bundle

    def show_static(self):
        """Draw the current state as a pyplot figure (shown at once on an interactive backend).

        Returns:
            the pyplot ``Figure``.
        """
        import matplotlib
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=self.figsize, dpi=DPI)
        if self.result is not None:
            self._draw(figure, self.result)
        backend = matplotlib.get_backend().lower()
        if backend not in ("agg", "pdf", "ps", "svg", "cairo", "template") and "inline" not in backend:
            plt.show(block=False)  # pragma: no cover - needs a screen
        return figure


def _finish(explorer: Explorer) -> Explorer:
    """Outside a Jupyter kernel nothing renders a widget: draw the initial state with pyplot."""
    if not _in_kernel():
        explorer.static_figure = explorer.show_static()
    return explorer


def _d_k_slider(value: int, disabled: bool = False) -> widgets.SelectionSlider:
    choices = sorted(set(D_K_CHOICES) | {value})
    options = [(f"{d} (hand-made)" if d == _HAND_MADE else str(d), d) for d in choices]
    return widgets.SelectionSlider(options=options, value=value, description="d_k",
                                   continuous_update=False, disabled=disabled,
                                   layout=widgets.Layout(width="340px"))
