"""Interactive explorers: move a slider and watch softmax, attention or a position table change.

Three functions, each returning an ipywidgets 8 box that a lesson shows in one line:

- :func:`softmax_explorer`: logits, temperature and the 1/sqrt(d_k) scale -> the weights as bars,
  with their entropy (chapters 02-03);
- :func:`attention_explorer`: a sentence, d_k, scale on/off, causal mask, padding, heads -> the
  weight heatmap with the selected query's row highlighted (chapters 03-05);
- :func:`positional_explorer`: embed_dim, base, positions -> the sinusoids, the table, and
  PE(p) . PE(p + k) as a function of k (chapter 07).

How they draw: every figure is a plain matplotlib ``Figure`` rendered to PNG bytes and shown in an
``ipywidgets.Image``; moving a control recomputes with course_lib's own functions and replaces the
bytes. No JavaScript of ours, no ipympl, nothing loaded from the network.

Without a widget frontend (nbval, ``jupyter nbconvert``, a plain Python shell) the explorer still
shows its initial state: the display bundle carries ``image/png`` (and a text summary) next to the
widget view, so a notebook executed headless and its HTML export show the figure; outside a Jupyter
kernel the explorer also draws the figure with pyplot.

Taught in: notebooks/02_softmax.ipynb, 03_scaling.ipynb, 04_masking.ipynb, 05_multi_head.ipynb,
07_positional_encoding.ipynb.
"""

from __future__ import annotations

import math
from typing import Sequence

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from ..attention import scaled_dot_product_attention, softmax
from ..masking import causal_mask, combine_masks
from ..positional import sinusoidal_encoding
from ..data.toy import PAD_TOKEN, SENTENCE, embed, sentence_embeddings, tokenize
from .plots import plot_attention
from .widgets import DPI, D_K_CHOICES, _HAND_MADE, Explorer, _d_k_slider, _entropy, _finish, _in_kernel, _png  # noqa: F401

__all__ = ["Explorer", "softmax_explorer", "attention_explorer", "positional_explorer"]

# ------------------------------------------------------------------------------------------
# Softmax and temperature
# ------------------------------------------------------------------------------------------


def _parse_logits(text: str) -> torch.Tensor:
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise ValueError("logits: type at least one number, e.g. 2, -1, 0.5")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"logits: could not read {text!r} as numbers separated by commas") from None
    if not all(math.isfinite(x) for x in values):
        raise ValueError("logits: every logit must be a finite number")
    return torch.tensor(values, dtype=torch.float64)  # (S,)


class SoftmaxExplorer(Explorer):
    """The explorer behind :func:`softmax_explorer`."""

    figsize = (9.0, 2.9)

    def __init__(self, logits: torch.Tensor, labels: list[str] | None, temperature: float, d_k: int):
        self.labels = labels
        text = ", ".join(f"{x:.4g}" for x in logits.tolist())
        self._given = (text, logits)  # the text box shows rounded logits; until edited, use the exact ones
        log_t = math.log10(temperature)
        controls = {
            "logits": widgets.Text(value=text, description="logits", continuous_update=False,
                                   layout=widgets.Layout(width="95%")),
            "temperature": widgets.FloatLogSlider(value=temperature, base=10, min=min(-2.0, log_t),
                                                  max=max(2.0, log_t), step=0.01, description="T",
                                                  readout_format=".3g", continuous_update=False,
                                                  layout=widgets.Layout(width="340px")),
            "d_k": _d_k_slider(d_k),
        }
        super().__init__(controls, rows=[["logits"], ["temperature", "d_k"]])

    def _compute(self, logits: str, temperature: float, d_k: int) -> dict:
        x = self._given[1] if logits == self._given[0] else _parse_logits(logits)  # (S,)
        scale = 1.0 / math.sqrt(d_k)
        effective = temperature * math.sqrt(d_k)
        scaled = x * scale / temperature  # (S,) what the softmax sees
        weights = softmax(scaled)  # (S,) course_lib's stable softmax
        labels = self.labels if self.labels is not None and len(self.labels) == len(x) else \
            [str(i) for i in range(len(x))]
        return {
            "logits": x, "labels": labels, "temperature": temperature, "d_k": d_k, "scale": scale,
            "effective_temperature": effective, "scaled": scaled, "weights": weights,
            "entropy": _entropy(weights), "max_entropy": math.log(len(x)),
            "argmax": int(weights.argmax()), "max_weight": float(weights.max()),
        }

    def _draw(self, figure: Figure, r: dict) -> None:
        S = len(r["logits"])
        left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
        colors = ["tab:orange" if i == r["argmax"] else "tab:blue" for i in range(S)]
        left.bar(range(S), r["logits"].numpy(), color="tab:gray")
        left.axhline(0, color="black", lw=0.6)
        left.set_title("logits (scores)", fontsize=9)
        right.bar(range(S), r["weights"].numpy(), color=colors)
        right.axhline(1 / S, color="black", ls="--", lw=0.8, label=f"uniform 1/{S}")
        right.set_ylim(0, 1.02)
        right.set_title(f"softmax(logits / (T·√d_k)),  T·√d_k = {r['effective_temperature']:.3g},  "
                        f"H = {r['entropy']:.3f} nats", fontsize=9)
        right.legend(fontsize=7, loc="upper right")
        for ax in (left, right):
            ax.set_xticks(range(S))
            ax.set_xticklabels(r["labels"], rotation=60 if S > 6 else 0, fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
        figure.subplots_adjust(left=0.06, right=0.99, bottom=0.27, top=0.88, wspace=0.15)

    def _describe(self, r: dict) -> list[str]:
        S, i = len(r["logits"]), r["argmax"]
        return [
            f"entropy H = {r['entropy']:.3f} nats (one-hot: 0, uniform over {S}: ln {S} = {r['max_entropy']:.3f})",
            f"largest weight {r['max_weight']:.3f} on {r['labels'][i]!r}; the weights sum to "
            f"{float(r['weights'].sum()):.3f}",
            f"T = {r['temperature']:.3g}, scale 1/√d_k = {r['scale']:.3g} (d_k = {r['d_k']}): "
            f"softmax at temperature T·√d_k = {r['effective_temperature']:.3g}",
        ]


def softmax_explorer(logits=None, labels: Sequence[str] | None = None, temperature: float = 1.0,
                     d_k: int = 1) -> SoftmaxExplorer:
    """Explore softmax: edit the logits, move the temperature and the 1/sqrt(d_k) scale.

    The weights are ``course_lib.softmax(logits / (T * sqrt(d_k)))``, drawn as bars next to the
    logits, with their entropy ``H = -sum w ln w`` in nats (0 for one-hot, ln S for uniform).
    Dividing by sqrt(d_k) is the same as a temperature of sqrt(d_k) (chapter 03).

    Args:
        logits: S numbers (list, 1-D tensor or array); default: the raw scores of the query "it"
            against every token of the running sentence (chapter 02, section 5).
        labels: S names for the bars (default: the tokens for the default logits, else 0..S-1).
        temperature: T > 0, the starting temperature.
        d_k: the starting d_k (a positive int); the scale is 1/sqrt(d_k), so d_k = 1 is unscaled.
    Returns:
        the explorer widget (an ``ipywidgets.VBox``); its ``result`` dict holds the numbers shown.
    Shape:
        logits (S,), weights (S,)
    Raises:
        TypeError: if logits is not a sequence of numbers or a tensor, or labels are not str.
        ValueError: if logits is not 1-D or empty, labels has the wrong length, temperature is not
            positive or d_k is not a positive int.
    Taught in: notebooks/02_softmax.ipynb (temperature).  Source: Vaswani et al. 2017, eq. 1.
    """
    fn = "softmax_explorer"
    if logits is None:
        tokens, x = sentence_embeddings()
        logits = x[tokens.index("it")] @ x.T  # (E,) @ (E, T) -> (T,): the scores of "it"
        labels = tokens if labels is None else labels
    if not isinstance(logits, torch.Tensor):
        try:
            logits = torch.as_tensor(logits, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{fn}: logits must be a 1-D tensor or a sequence of numbers, "
                            f"got {type(logits).__name__}") from None
    logits = logits.detach().to("cpu", torch.float64)
    if logits.dim() != 1 or logits.numel() == 0:
        raise ValueError(f"{fn}: logits must be 1-D with at least one value, got shape {tuple(logits.shape)}")
    if labels is not None:
        labels = list(labels)
        if not all(isinstance(label, str) for label in labels):
            raise TypeError(f"{fn}: labels must be str")
        if len(labels) != logits.numel():
            raise ValueError(f"{fn}: labels has {len(labels)} names but logits has {logits.numel()} values")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"{fn}: temperature must be a positive number, got {temperature!r}")
    if isinstance(d_k, bool) or not isinstance(d_k, int) or d_k <= 0:
        raise ValueError(f"{fn}: d_k must be a positive int, got {d_k!r}")
    return _finish(SoftmaxExplorer(logits, labels, float(temperature), d_k))


# ------------------------------------------------------------------------------------------
# Attention on a sentence
# ------------------------------------------------------------------------------------------


def _projection(d_k: int, seed: int, head: int) -> torch.Tensor:
    """The seeded random map from the 7 hand-made features to d_k (chapter 03, section 5)."""
    g = torch.Generator().manual_seed(seed + head)
    return torch.randn(_HAND_MADE, d_k, generator=g) / math.sqrt(_HAND_MADE)  # (7, d_k), variance 1/7


class AttentionExplorer(Explorer):
    """The explorer behind :func:`attention_explorer`."""

    figsize = (10.5, 4.2)

    def __init__(self, *, sentence, d_k, scale, causal, pads, mask_pads, num_heads, head, query, seed,
                 model, inputs, tokens):
        self.num_heads, self.seed = num_heads, seed
        self.model, self.inputs, self.fixed_tokens = model, inputs, tokens
        self._wanted_query = query
        self._query_ready = False
        controls = {}
        if model is None:
            controls["sentence"] = widgets.Text(value=sentence, description="sentence",
                                                continuous_update=False, layout=widgets.Layout(width="95%"))
            controls["d_k"] = _d_k_slider(d_k)
        controls["scale"] = widgets.Checkbox(value=scale, description="scale by 1/√d_k", indent=False)
        controls["causal"] = widgets.Checkbox(value=causal, description="causal mask", indent=False)
        controls["pads"] = widgets.IntSlider(value=pads, min=0, max=max(6, pads), description="pads",
                                             continuous_update=False, layout=widgets.Layout(width="260px"))
        controls["mask_pads"] = widgets.Checkbox(value=mask_pads, description="padding mask", indent=False)
        if num_heads > 1:
            controls["head"] = widgets.ToggleButtons(options=[(f"head {h}", h) for h in range(num_heads)],
                                                     value=head, description="head",
                                                     style={"button_width": "70px"})
        controls["query"] = widgets.Dropdown(options=[("0", 0)], value=0, description="query",
                                             layout=widgets.Layout(width="220px"))
        rows = [["sentence"] if model is None else [],
                (["d_k"] if model is None else []) + ["scale", "causal"],
                ["pads", "mask_pads", "query"],
                ["head"] if num_heads > 1 else []]
        super().__init__(controls, rows=rows)

    def _tokens(self, sentence: str | None, pads: int) -> tuple[list[str], torch.Tensor]:
        if self.model is None:
            tokens = tokenize(sentence)
            if not tokens:
                raise ValueError("sentence: type a sentence, e.g. " + SENTENCE)
            x = embed(tokens, dtype=torch.float32)  # (T, 7) hand-made vectors
        else:
            tokens, x = list(self.fixed_tokens), self.inputs
        x = torch.cat([x, torch.zeros(pads, x.shape[-1], dtype=x.dtype, device=x.device)])  # (T + pads, E)
        return tokens + [PAD_TOKEN] * pads, x

    def _sync_controls(self) -> None:
        values = self.values()
        try:
            tokens, _ = self._tokens(values.get("sentence"), values["pads"])
        except (ValueError, TypeError):
            return
        query = self.controls["query"]
        options = [(f"{i}: {t}", i) for i, t in enumerate(tokens)]
        if list(query.options) == options:
            return
        current = query.value
        query.options = options
        if not self._query_ready:  # the first time: the query asked for, else "it", else the last token
            self._query_ready = True
            wanted = self._wanted_query
            if isinstance(wanted, str):
                target = tokens.index(wanted)
            elif isinstance(wanted, int):
                target = wanted
            else:
                target = tokens.index("it") if "it" in tokens else len(tokens) - 1
        else:  # the tokens changed (sentence, pads): keep the row if it still exists
            target = current if current is not None and current < len(tokens) else len(tokens) - 1
        query.value = int(target)

    def _compute(self, scale: bool, causal: bool, pads: int, mask_pads: bool, query: int,
                 sentence: str | None = None, d_k: int | None = None, head: int = 0) -> dict:
        tokens, x = self._tokens(sentence, pads)
        T = len(tokens)
        with torch.no_grad():
            if self.model is None:
                projections = [torch.eye(_HAND_MADE) if d_k == _HAND_MADE else _projection(d_k, self.seed, h)
                               for h in range(self.num_heads)]
                q = torch.stack([x @ W for W in projections])  # (T, 7) @ (7, E) -> (T, E); stacked (H, T, E)
                k = q  # queries and keys share the map (chapter 03, section 5)
            else:
                from ..multihead import split_heads

                batch = x.to(self.model.W_query.weight)[None]  # (1, T, D)
                q = split_heads(self.model.W_query(batch), self.num_heads)[0].cpu().float()  # (H, T, Dh)
                k = split_heads(self.model.W_key(batch), self.num_heads)[0].cpu().float()  # (H, T, Dh)
                d_k = q.shape[-1]
            factor = 1.0 / math.sqrt(d_k) if scale else 1.0
            real = T - pads
            masks = []
            if causal:
                masks.append(causal_mask(T))  # (T, T)
            if pads and mask_pads:
                masks.append((torch.arange(T) < real)[None, :])  # (1, T): keys that are real tokens
            mask = combine_masks(*masks).expand(T, T) if masks else None  # (T, T) or None
            _, weights = scaled_dot_product_attention(q, k, q, attn_mask=mask, scale=factor,
                                                      return_weights=True)  # (H, T, T)
            scores = (q @ k.transpose(-2, -1)) * factor  # (H, T, E) @ (H, E, T) -> (H, T, T)
        allowed = torch.ones(T, T, dtype=torch.bool) if mask is None else mask
        row = weights[head, query]  # (T,)
        return {
            "tokens": tokens, "weights": weights, "scores": scores, "mask": allowed, "head": head,
            "query": query, "row": row, "d_k": d_k, "scale": factor, "pads": pads, "causal": causal,
            "mask_pads": mask_pads, "entropy": _entropy(row), "visible": int(allowed[query].sum()),
            "score_std": float(scores[head].std()) if T > 1 else 0.0,
        }

    def _draw(self, figure: Figure, r: dict) -> None:
        from matplotlib.patches import Rectangle


        tokens, T, i = r["tokens"], len(r["tokens"]), r["query"]
        heat, bars = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.45, 1]})
        head = f"head {r['head']}, " if self.num_heads > 1 else ""
        plot_attention(r["weights"][r["head"]], tokens, ax=heat, annotate=T <= 12,
                       title=f"attention weights ({head}d_k = {r['d_k']}, "
                             f"{'scaled' if r['scale'] != 1.0 else 'unscaled'})")
        heat.title.set_fontsize(9)
        heat.add_patch(Rectangle((-0.5, i - 0.5), T, 1, fill=False, edgecolor="red", lw=2.0))
        row = r["row"].numpy()
        visible = r["mask"][i].numpy()
        bars.bar(range(T), row, color=["tab:red" if v else "lightgray" for v in visible])
        bars.set_ylim(0, 1.02)
        bars.set_xticks(range(T))
        bars.set_xticklabels(tokens, rotation=60, fontsize=8)
        for tick, v in zip(bars.get_xticklabels(), visible):
            tick.set_color("black" if v else "gray")
        bars.set_title(f"row of query {tokens[i]!r} (gray: masked keys)", fontsize=9)
        bars.tick_params(axis="y", labelsize=8)
        figure.subplots_adjust(left=0.09, right=0.98, bottom=0.22, top=0.92, wspace=0.22)

    def _describe(self, r: dict) -> list[str]:
        tokens, row = r["tokens"], r["row"]
        top = row.argsort(descending=True, stable=True)[:3].tolist()
        head = f", head {r['head']}" if self.num_heads > 1 else ""
        masks = [name for name, on in (("causal", r["causal"]), (f"padding ({r['pads']} pads)",
                                                                 r["pads"] and r["mask_pads"])) if on]
        scale = f"scaled by 1/√d_k = {r['scale']:.3g}" if r["scale"] != 1.0 else "unscaled"
        return [
            f"query {tokens[r['query']]!r} (row {r['query']}{head}): top keys "
            + ", ".join(f"{tokens[j]!r} {float(row[j]):.3f}" for j in top),
            f"row entropy {r['entropy']:.3f} nats (uniform over the {r['visible']} keys it may see: "
            f"{math.log(max(r['visible'], 1)):.3f}); row sum {float(row.sum()):.3f}",
            f"scores {scale}, d_k = {r['d_k']}: standard deviation {r['score_std']:.2f}; masks: "
            + (", ".join(masks) if masks else "none"),
        ]


def attention_explorer(sentence: str = SENTENCE, d_k: int = _HAND_MADE, scale: bool = True,
                       causal: bool = False, pads: int = 0, mask_pads: bool = True, num_heads: int = 1,
                       head: int = 0, query: int | str | None = None, seed: int = 0, model=None,
                       inputs=None, tokens: Sequence[str] | None = None) -> AttentionExplorer:
    """Explore self-attention on a sentence: d_k, the scale, a causal mask, padding, heads.

    Each token's hand-made vector (``course_lib.data.toy``, 7 features) is mapped to d_k features by a
    seeded random matrix W (7, d_k) of variance 1/7, shared by queries and keys as in chapter 03,
    section 5 (d_k = 7 uses the hand-made vectors themselves); head h uses the seed ``seed + h``.
    The weights come from ``course_lib.scaled_dot_product_attention`` with scale 1/sqrt(d_k) (or
    1 when ``scale`` is off), a causal mask and/or a padding mask on the keys. Pads are zero vectors
    appended to the sentence (score 0 with every query). The heatmap has the selected query's row
    framed in red, and its weights are drawn as bars.

    With ``model`` (a ``course_lib.multihead.MultiHeadAttention``), ``inputs`` (T, D) and
    ``tokens`` (T names), the queries and keys are the model's own projections, split into its
    heads (d_k = D / H; the sentence and d_k controls are then not shown).

    Args:
        sentence: the starting sentence; every word needs a hand-made vector (course_lib.data.toy).
        d_k: the query/key size, one of :data:`D_K_CHOICES` or any positive int.
        scale: divide the scores by sqrt(d_k).  causal: apply a causal mask.
        pads: number of pad tokens appended.  mask_pads: mask the pad keys.
        num_heads: number of heads (ignored with ``model``, which has its own).
        head: the head shown first.  query: the query row highlighted first (index or token;
            default "it" if present, else the last token).  seed: the projections' seed.
        model, inputs, tokens: see above.
    Returns:
        the explorer widget (an ``ipywidgets.VBox``); its ``result`` dict holds the numbers shown.
    Shape:
        inputs (T, D) -> weights (H, T + pads, T + pads)
    Raises:
        TypeError: if sentence is not a str, model is not a MultiHeadAttention or inputs is not a
            tensor.
        ValueError: if a word has no hand-made vector (the message lists the known words), d_k,
            num_heads or pads is out of range, head or query does not exist, or inputs and tokens
            do not match.
    Taught in: notebooks/03_scaling.ipynb, 04_masking.ipynb, 05_multi_head.ipynb.
    Source: Vaswani et al. 2017, sec. 3.2.1-3.2.3.
    """
    fn = "attention_explorer"
    if model is not None:
        from ..multihead import MultiHeadAttention

        if not isinstance(model, MultiHeadAttention):
            raise TypeError(f"{fn}: model must be a course_lib.multihead.MultiHeadAttention, "
                            f"got {type(model).__name__}")
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"{fn}: with a model, inputs must be a (T, D) tensor, got {type(inputs).__name__}")
        inputs = inputs.detach()
        if inputs.dim() == 3 and inputs.shape[0] == 1:
            inputs = inputs[0]
        if inputs.dim() != 2 or inputs.shape[-1] != model.embed_dim:
            raise ValueError(f"{fn}: inputs must be (T, D) with D = {model.embed_dim}, got {tuple(inputs.shape)}")
        if tokens is None:
            tokens = [str(i) for i in range(inputs.shape[0])]
        tokens = list(tokens)
        if len(tokens) != inputs.shape[0]:
            raise ValueError(f"{fn}: tokens has {len(tokens)} names but inputs has T = {inputs.shape[0]} rows")
        num_heads = model.num_heads
        sentence = " ".join(tokens)
    else:
        if not isinstance(sentence, str):
            raise TypeError(f"{fn}: sentence must be a str, got {type(sentence).__name__}")
        embed(tokenize(sentence))  # fails now, with the list of known words, rather than in the widget
        if isinstance(d_k, bool) or not isinstance(d_k, int) or d_k <= 0:
            raise ValueError(f"{fn}: d_k must be a positive int, got {d_k!r}")
    for name, value, low in (("num_heads", num_heads, 1), ("pads", pads, 0), ("head", head, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{fn}: {name} must be an int >= {low}, got {value!r}")
    if head >= num_heads:
        raise ValueError(f"{fn}: head must be in 0..{num_heads - 1}, got {head}")
    names = (tokens if model is not None else tokenize(sentence)) + [PAD_TOKEN] * pads
    if isinstance(query, str) and query not in names:
        raise ValueError(f"{fn}: query {query!r} is not a token of the sentence {names}")
    if isinstance(query, int) and not 0 <= query < len(names):
        raise ValueError(f"{fn}: query must be in 0..{len(names) - 1}, got {query}")
    return _finish(AttentionExplorer(sentence=sentence, d_k=d_k, scale=bool(scale), causal=bool(causal),
                                     pads=pads, mask_pads=bool(mask_pads), num_heads=num_heads, head=head,
                                     query=query, seed=seed, model=model, inputs=inputs, tokens=tokens))


# ------------------------------------------------------------------------------------------
# Sinusoidal positional encoding
# ------------------------------------------------------------------------------------------


class PositionalExplorer(Explorer):
    """The explorer behind :func:`positional_explorer`."""

    figsize = (13.0, 3.4)
    OFFSETS = (0, 1, 2, 5, 10, 50)

    def __init__(self, embed_dim: int, base: float, num_positions: int, position: int):
        log_b = math.log10(base)
        controls = {
            "embed_dim": widgets.IntSlider(value=embed_dim, min=2, max=max(256, embed_dim), step=2,
                                         description="embed_dim", continuous_update=False),
            "base": widgets.FloatLogSlider(value=base, base=10, min=min(1.0, log_b), max=max(6.0, log_b),
                                           step=0.05, description="base", readout_format=".4g",
                                           continuous_update=False),
            "num_positions": widgets.IntSlider(value=num_positions, min=2, max=max(512, num_positions),
                                               description="positions", continuous_update=False),
            "position": widgets.IntSlider(value=position, min=0, max=num_positions - 1, description="p",
                                          continuous_update=False),
        }
        super().__init__(controls, rows=[["embed_dim", "base"], ["num_positions", "position"]])

    def _sync_controls(self) -> None:
        p = self.controls["position"]
        p.max = self.controls["num_positions"].value - 1  # clamps p.value if needed

    def _compute(self, embed_dim: int, base: float, num_positions: int, position: int) -> dict:
        P, D, p = num_positions, embed_dim, position
        pe = sinusoidal_encoding(P, D, base=base, dtype=torch.float64)  # (P, D)
        ks = torch.arange(-p, P - p)  # offsets k with p + k inside the table
        dots = pe[p + ks] @ pe[p]  # (K, D) @ (D,) -> (K,): PE(p) . PE(p + k)
        frequencies = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # (D/2,) w_i
        theory = torch.cos(ks[:, None].double() * frequencies[None, :]).sum(-1)  # (K, 1) * (1, D/2) -> (K,)
        return {"pe": pe, "embed_dim": D, "base": base, "num_positions": P, "position": p, "offsets": ks,
                "dots": dots, "theory": theory, "frequencies": frequencies,
                "wavelengths": 2 * math.pi / frequencies}

    def _draw(self, figure: Figure, r: dict) -> None:
        pe, D, P = r["pe"], r["embed_dim"], r["num_positions"]
        waves, table, dots = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 1.1, 1]})
        pairs = sorted({0, 1, D // 8, D // 4} & set(range(D // 2)))
        for i in pairs:
            waves.plot(range(P), pe[:, 2 * i].numpy(), lw=1.2, label=f"column {2 * i} (pair {i})")
        waves.set_xlabel("position p", fontsize=8)
        waves.set_title("sine columns: low pairs turn fast", fontsize=9)
        waves.legend(fontsize=7, loc="lower left")
        image = table.imshow(pe.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
        table.set_xlabel("column (feature)", fontsize=8)
        table.set_ylabel("position p", fontsize=8)
        table.set_title(f"PE table, P = {P}, D = {D}, base = {r['base']:.4g}", fontsize=9)
        figure.colorbar(image, ax=table, fraction=0.046, pad=0.04)
        dots.plot(r["offsets"].numpy(), r["dots"].numpy(), color="tab:blue", lw=2.5, alpha=0.6,
                  label=f"PE({r['position']}) · PE({r['position']} + k)")
        dots.plot(r["offsets"].numpy(), r["theory"].numpy(), color="black", ls="--", lw=0.9,
                  label="Σ_i cos(ω_i k)")
        dots.axhline(D / 2, color="gray", ls=":", lw=0.8)
        dots.set_xlabel("offset k", fontsize=8)
        dots.set_title("dot product: a function of k only", fontsize=9)
        dots.legend(fontsize=7, loc="lower left")
        for ax in (waves, table, dots):
            ax.tick_params(labelsize=8)
        figure.subplots_adjust(left=0.04, right=0.99, bottom=0.15, top=0.91, wspace=0.22)

    def _describe(self, r: dict) -> list[str]:
        p, ks, dots = r["position"], r["offsets"], r["dots"]
        shown = [k for k in self.OFFSETS if p + k < r["num_positions"]]
        values = ", ".join(f"k = {k}: {float(dots[k + p]):.2f}" for k in shown)
        w = r["wavelengths"]
        return [
            f"PE(p) · PE(p + k) at p = {p}: {values} (k = 0 gives D/2 = {r['embed_dim'] / 2:g})",
            f"the same curve at every p and symmetric in k: it equals Σ_i cos(ω_i k), "
            f"ω_i = base^(-2i/D) = {r['base']:.4g}^(-2i/{r['embed_dim']})",
            f"wavelengths 2π/ω_i: from {float(w[0]):.1f} positions (pair 0) to {float(w[-1]):.1f} "
            f"(pair {len(w) - 1})",
        ]


def positional_explorer(embed_dim: int = 64, base: float = 10000.0, num_positions: int = 128,
                        position: int = 0) -> PositionalExplorer:
    """Explore the sinusoidal position table: embed_dim, base, number of positions.

    Three panels: a few sine columns against the position, the whole (P, D) table
    (``course_lib.positional.sinusoidal_encoding``), and the dot product PE(p) . PE(p + k) for
    every offset k that stays inside the table, which depends on k only:
    ``sum_i cos(w_i k)`` with ``w_i = base^(-2i/D)``.

    Args:
        embed_dim: D, an even int (the slider moves in steps of 2).
        base: the wavelength scale (10000 in the paper), > 1.
        num_positions: P, the number of positions (rows).
        position: p, the reference position of the dot product (0 <= p < P).
    Returns:
        the explorer widget (an ``ipywidgets.VBox``); its ``result`` dict holds the numbers shown.
    Shape:
        table (P, D), dot products (P,)
    Raises:
        ValueError: if embed_dim is not an even positive int, base <= 1, num_positions < 2 or
            position is outside 0..P-1.
    Taught in: notebooks/07_positional_encoding.ipynb.  Source: Vaswani et al. 2017, sec. 3.5.
    """
    fn = "positional_explorer"
    for name, value, low in (("embed_dim", embed_dim, 2), ("num_positions", num_positions, 2), ("position", position, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{fn}: {name} must be an int >= {low}, got {value!r}")
    if embed_dim % 2:
        raise ValueError(f"{fn}: embed_dim must be even (sine/cosine pairs), got {embed_dim}")
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1:
        raise ValueError(f"{fn}: base must be a number > 1, got {base!r}")
    if position >= num_positions:
        raise ValueError(f"{fn}: position must be in 0..{num_positions - 1}, got {position}")
    return _finish(PositionalExplorer(embed_dim, float(base), num_positions, position))
