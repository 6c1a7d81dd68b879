"""Chapter 11's pictures: a live loss curve for training, and a sampling explorer (temperature, top-p).

- :class:`LiveLossPlot`: a callback for :func:`course_lib.gpt.fit` that redraws the training and
  validation loss, beside horizontal lines for the baselines, in one notebook output that is
  updated in place (a PNG: the saved notebook keeps the final curve, nothing else).
- :func:`sampling_explorer`: move the temperature and top-p sliders and watch the next-character
  distribution change (before and after the filters) and a sample of text drawn from it. Drawn
  like the other explorers (:mod:`course_lib.viz.explorers`): a matplotlib figure rendered to PNG in
  an ``ipywidgets.Image``; without a widget frontend the display bundle still carries the PNG
  and a text summary.

Taught in: notebooks/11_small_gpt.ipynb.
"""

from __future__ import annotations


import ipywidgets as widgets
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .widgets import DPI, Explorer, _finish, _in_kernel, _png
from ..gpt import GPT, generate, sampling_probs

__all__ = ["LiveLossPlot", "SamplingExplorer", "sampling_explorer"]


class LiveLossPlot:
    """A :func:`course_lib.gpt.fit` callback: the loss curves so far, redrawn in one output cell.

    Args:
        baselines: optional dict name -> loss (nats per token), drawn as dashed horizontal lines.
        title: the figure's title.
    Attributes:
        figure: the matplotlib ``Figure`` (not a pyplot figure, so it is not shown twice).
        png: the last rendering, PNG bytes.
    Taught in: notebooks/11_small_gpt.ipynb.
    """

    def __init__(self, baselines: dict[str, float] | None = None, title: str = "next-character loss") -> None:
        self.baselines = dict(baselines or {})
        self.title = title
        self.figure = Figure(figsize=(6.0, 3.2), dpi=DPI)
        FigureCanvasAgg(self.figure)
        self.png: bytes | None = None
        self._handle = None

    def draw(self, history) -> None:
        """Redraw the figure from a :class:`course_lib.gpt.TrainHistory`."""
        self.figure.clear()
        ax = self.figure.add_subplot(1, 1, 1)
        if history.steps:
            ax.plot(history.steps, history.train_loss, color="#9db4d8", lw=1, label="training batch")
        if history.val_steps:
            ax.plot(history.val_steps, history.val_loss, "o-", color="#1f4e9a", ms=3, label="validation")
        for i, (name, value) in enumerate(self.baselines.items()):
            ax.axhline(value, ls="--", lw=1, color=("#b15928", "#6a3d9a", "#33a02c")[i % 3], label=f"{name} {value:.2f}")
        ax.set_xlabel("step")
        ax.set_ylabel("nats per character")
        ax.set_title(self.title)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
        self.figure.tight_layout()
        self.png = _png(self.figure)

    def __call__(self, history) -> None:
        self.draw(history)
        if not _in_kernel():
            return
        from IPython.display import Image, display

        if self._handle is None:
            self._handle = display(Image(data=self.png, format="png"), display_id=True)
        else:
            self._handle.update(Image(data=self.png, format="png"))


class SamplingExplorer(Explorer):
    """Temperature and top-p sliders over one model's next-character distribution and a sample."""

    figsize = (8.0, 3.0)

    def __init__(self, model: GPT, tokenizer, prompt: str, controls: dict, length: int, top_k: int | None,
                 seed: int) -> None:
        self.model, self.tokenizer, self.prompt = model, tokenizer, prompt
        self.length, self.top_k, self.seed = length, top_k, seed
        device = next(model.parameters()).device
        self._ids = tokenizer.encode(prompt)[None].to(device)  # (1, T0)
        with torch.no_grad():
            was_training = model.training
            model.eval()
            self._logits = model(self._ids[:, -model.config.context_length:])[0, -1].float().cpu()  # (V,)
            model.train(was_training)
        super().__init__(controls, [["temperature", "top_p"]])

    def _compute(self, temperature: float, top_p: float) -> dict:
        raw = sampling_probs(self._logits, 1.0)  # (V,)
        filtered = sampling_probs(self._logits, temperature, self.top_k, top_p)  # (V,)
        g = torch.Generator(device=self._ids.device).manual_seed(self.seed)
        out = generate(self.model, self._ids, self.length, temperature=temperature, top_k=self.top_k,
                       top_p=top_p, generator=g)  # (1, T0 + length)
        text = self.tokenizer.decode(out[0, self._ids.shape[1]:].cpu())
        kept = int((filtered > 0).sum())
        return {"temperature": temperature, "top_p": top_p, "raw": raw, "filtered": filtered, "kept": kept,
                "sample": text}

    def _draw(self, figure: Figure, result: dict) -> None:
        raw, filtered = result["raw"], result["filtered"]
        order = torch.argsort(raw, descending=True)[:20]  # the 20 most likely characters
        labels = [repr(self.tokenizer.chars[i])[1:-1] or " " for i in order.tolist()]
        labels = ["\\n" if lab == "\\n" else ("␣" if lab == " " else lab) for lab in labels]
        ax = figure.add_subplot(1, 1, 1)
        x = list(range(len(order)))
        ax.bar([i - 0.2 for i in x], raw[order].tolist(), width=0.4, color="#c7d3e8", label="model (T = 1)")
        ax.bar([i + 0.2 for i in x], filtered[order].tolist(), width=0.4, color="#1f4e9a",
               label=f"sampled from (T = {result['temperature']:.2f}, top-p = {result['top_p']:.2f})")
        ax.set_xticks(x, labels)
        ax.set_ylabel("probability")
        ax.set_title(f"next character after {self.prompt[-30:]!r}: {result['kept']} of {raw.numel()} kept",
                     fontsize=9)
        ax.legend(fontsize=8)
        figure.tight_layout()

    def _describe(self, result: dict) -> list[str]:
        sample = result["sample"].replace("\n", " / ")
        return [f"temperature {result['temperature']:.2f}, top-p {result['top_p']:.2f}: "
                f"{result['kept']} characters can be drawn next",
                f"sample: {self.prompt[-20:]!r} + {sample!r}"]


def sampling_explorer(model: GPT, tokenizer, prompt: str = "ROMEO.\n", temperature: float = 0.8, top_p: float = 0.95,
                      top_k: int | None = None, length: int = 120, seed: int = 0) -> SamplingExplorer:
    """Explore sampling: temperature and top-p sliders over a trained model's next-character distribution.

    The figure shows the 20 most likely next characters after ``prompt``: the model's own
    probabilities (temperature 1, no filter) beside the distribution actually sampled from,
    :func:`course_lib.gpt.sampling_probs` (temperature, then top-k, then top-p). The status line
    shows a ``length``-character sample drawn with the KV cache (same seed at every setting,
    so only the settings change it).

    Args:
        model: a trained :class:`course_lib.gpt.GPT`.  tokenizer: its :class:`CharTokenizer`.
        prompt: the text to continue (characters of the vocabulary).
        temperature: the starting temperature, in (0, 2].  top_p: the starting top-p, in (0, 1].
        top_k: an optional fixed top-k.  length: characters to sample.  seed: of the sampler.
    Returns:
        the explorer widget (an ``ipywidgets.VBox``); ``result`` holds the numbers shown.
    Raises:
        TypeError: if model is not a GPT.  ValueError: for an empty prompt or a setting out of range.
    Taught in: notebooks/11_small_gpt.ipynb.  Source: Holtzman et al. 2020 (nucleus sampling).
    """
    fn = "sampling_explorer"
    if not isinstance(model, GPT):
        raise TypeError(f"{fn}: model must be a course_lib.gpt.GPT, got {type(model).__name__}")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"{fn}: prompt must be a non-empty str")
    if not 0 < temperature <= 2:
        raise ValueError(f"{fn}: temperature must be in (0, 2], got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"{fn}: top_p must be in (0, 1], got {top_p!r}")
    controls = {
        "temperature": widgets.FloatSlider(value=temperature, min=0.05, max=2.0, step=0.05, description="temperature",
                                           continuous_update=False, readout_format=".2f"),
        "top_p": widgets.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, description="top-p",
                                     continuous_update=False, readout_format=".2f"),
    }
    return _finish(SamplingExplorer(model, tokenizer, prompt, controls, length, top_k, seed))
