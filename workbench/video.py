"""Pictures drawn with PIL (cheap enough to redraw on every frame): the probability bars and the agreement
timeline of the episode player, and a side-by-side episode as a GIF or MP4 for a slide."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .trace import Trace, upscale

TEACHER_RGB, STUDENT_RGB, DISAGREE_RGB = (31, 119, 180), (255, 127, 14), (214, 39, 40)


def bars_image(trace: Trace, t: int, height: int, width: int = 300) -> np.ndarray:
    """Teacher (blue) and student (orange) action probabilities on frame t, one pair of bars per action (the
    trace's own names for the two: two peers, say)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    names = trace.action_names
    agree = bool(trace.agree[t])
    d.text((6, 4), f"frame {t}  return {trace.rewards[:t + 1].sum():g}", fill="black")
    d.text((6, 18), "agree" if agree else "DISAGREE", fill="black" if agree else DISAGREE_RGB)
    top, row = 38, min(40, max(14, (height - 60) // max(1, len(names))))
    bar_w = width - 110
    for k, name in enumerate(names):
        y = top + k * row
        d.text((4, y), name[:14], fill="black")
        for j, (p, color) in enumerate(((trace.teacher_probs[t, k], TEACHER_RGB),
                                        (trace.student_probs[t, k], STUDENT_RGB))):
            h = max(2, row // 2 - 2)
            d.rectangle([104, y + j * (h + 1), 104 + int(bar_w * float(p)), y + j * (h + 1) + h], fill=color)
    first, second = trace.names
    d.text((6, height - 14), f"blue: {first}   orange: {second}", fill="black")
    return np.asarray(img)


def timeline_image(trace: Trace, t: int, width: int = 640, height: int = 64) -> np.ndarray:
    """The episode as a strip: green where teacher and student agree, red where they differ; reward ticks below;
    a black cursor at frame t."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    T = max(1, trace.length)
    x = lambda k: int(round(k * (width - 1) / T))  # noqa: E731
    strip = height // 2
    for k in range(trace.length):
        d.rectangle([x(k), 4, max(x(k), x(k + 1) - 1), strip], fill=(44, 160, 44) if trace.agree[k] else DISAGREE_RGB)
    for k in np.flatnonzero(trace.rewards):
        up = trace.rewards[k] > 0
        d.line([x(k), strip + 6, x(k), height - 4], fill=(44, 160, 44) if up else DISAGREE_RGB, width=2)
    d.rectangle([x(t) - 1, 0, x(t) + 1, height - 1], fill="black")
    return np.asarray(img)


def frames(trace: Trace, scale: int | None = None) -> list[np.ndarray]:
    """One RGB picture per step: the human-view screen beside the two policies' bars."""
    h = trace.screens.shape[1]
    scale = scale or max(1, 320 // h)
    out = []
    for t in range(trace.length):
        screen = upscale(trace.screens[t], scale)
        panel = bars_image(trace, t, max(screen.shape[0], 40 + 16 * len(trace.action_names)))
        canvas = np.full((max(screen.shape[0], panel.shape[0]), screen.shape[1] + panel.shape[1], 3), 255, np.uint8)
        canvas[:screen.shape[0], :screen.shape[1]] = screen
        canvas[:panel.shape[0], screen.shape[1]:] = panel
        out.append(canvas)
    return out


def export_video(trace: Trace, path: str | Path, fps: int = 10) -> Path:
    """Write ``path`` (.gif always works; .mp4 needs imageio-ffmpeg). Returns the path."""
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"video must end in .gif or .mp4, got {path.name!r}")
    pics = frames(trace)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    if suffix == ".gif":
        iio.imwrite(tmp, np.stack(pics), duration=int(1000 / fps), loop=0)
    else:
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ValueError("MP4 export needs imageio-ffmpeg: pip install imageio-ffmpeg (or write a .gif)") from None
        iio.imwrite(tmp, np.stack(pics), fps=fps, codec="libx264")
    tmp.replace(path)
    return path


def gif_html(path: str | Path, width: int | None = None):
    """An HTML <img> with the GIF inlined (base64), so the report shows the animation offline."""
    import base64

    from IPython.display import HTML

    data = base64.b64encode(Path(path).read_bytes()).decode()
    size = f' width="{width}"' if width else ""
    return HTML(f'<img src="data:image/gif;base64,{data}"{size} alt="{Path(path).name}">')
