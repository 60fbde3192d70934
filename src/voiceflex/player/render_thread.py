"""The routine's track rendered into one buffer by a thread of its own, so play can start before the end is mixed."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from voiceflex.audio.rate import ms_to_samples

if TYPE_CHECKING:
    import numpy as np

    from voiceflex.planned import Plan


def render_track(plan: Plan) -> np.ndarray:
    """The whole routine as one int16 array: exactly the samples `planned.render` gives, which export writes.

    Played as one buffer (see simpleaudio_output for why not in blocks);
    30 minutes take 76 MiB.
    """
    render = TrackRender(plan)
    try:
        render.ready(render.total)
    finally:
        render.close()
    return render.samples


class TrackRender:
    """The routine's track, rendered into one int16 buffer by a background thread, first sample first.

    `play` starts while the rest is rendered into the same buffer; the
    output hands the device a sample only after `ready` said it is final
    (see output.Output.play).  The samples are exactly those of
    `planned.render`, which export writes.
    """

    def __init__(self, plan: Plan):
        import numpy as np

        self.total = ms_to_samples(plan.timeline.duration_ms)
        self.samples = np.zeros(self.total, np.int16)
        self._filled = 0
        self._error: BaseException | None = None
        self._stopped = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._fill, args=(plan,), daemon=True,
                                        name="voiceflex-render")
        self._thread.start()

    @property
    def filled(self) -> int:
        """Samples [0, filled) are final."""
        return self._filled

    def ready(self, upto: int) -> None:
        """Wait until samples [0, upto) are final; raises what stopped the renderer, if anything did."""
        upto = min(upto, self.total)
        with self._changed:
            self._changed.wait_for(lambda: self._filled >= upto or self._error is not None
                                   or self._stopped)
            if self._error is not None:
                raise self._error
            if self._filled < upto:
                raise RuntimeError("the track is no longer being rendered")

    def close(self) -> None:
        """Stop rendering (the thread ends after its current chunk)."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def _fill(self, plan: Plan) -> None:
        from voiceflex import planned

        try:
            chunks = planned.render(plan)
            try:
                for chunk in chunks:
                    start, end = self._filled, self._filled + len(chunk)
                    if end > self.total:
                        raise RuntimeError(f"the renderer gave more than the track's {self.total} samples")
                    self.samples[start:end] = chunk
                    with self._changed:
                        self._filled = end
                        self._changed.notify_all()
                        if self._stopped:
                            return
            finally:
                chunks.close()
            if self._filled != self.total:
                raise RuntimeError(f"the renderer gave {self._filled} samples for a {self.total}-sample track")
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits in ready()
            with self._changed:
                self._error = exc
                self._changed.notify_all()
