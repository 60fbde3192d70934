"""Levels: every clip and tone of an export at its level, and one gain to the target.

How an export reaches -16 LUFS integrated with true peak <= -1 dBTP:

1. Every clip is levelled to the target on its own, so short and long cues,
   loud and quiet engines all speak at one level ("voice normalised"); tones
   keep their ToneSpec.db, under the voice.
2. The mix's integrated loudness, measured exactly (BS.1770, loudness.py),
   gives the gain to the target.  It is usually +2 to +3.5 dB: short cues and
   pauses leave part-empty 400 ms blocks, and the breathing glides, 9 dB
   under the voice and seconds long, pass the -10 LU relative gate and pull
   the average down (measured: 2.4 of the 2.7 dB on a routine one third
   breathing).
3. Each clip gets a peak budget: the ceiling, less that gain, less the tones
   sounding under it (each tone's own envelope over the overlap); clips over
   budget are shaped (dynamics.py) and levelled back, each measured exactly.
4. Exact (exact_levels, what tests hold the streaming plan against): the
   mix is measured again for the final gain.  The peak bound (each clip's
   true peak plus the tones under it; tones alone) caps it; if
   the cap bites by more than GIVE_DB, step 3 runs again with more in hand,
   unless what binds cannot be shaped further.
   Streaming (stream_levels: what export and play use): the gain of step 2
   stands, and step 3 runs in the shaper thread while the track is already
   being encoded.  Shaped cues are levelled back to their loudness, so the mix
   moves only by how its part-empty blocks change (0.03-0.15 dB measured); a
   cue its budget is out of reach for is turned down to it, so the peak bound
   always holds.  Where those turned-down cues would leave the mix short of
   the target (brief cues over long quiet glides: a breathing routine
   measured -17.9 LUFS), all tones are raised together until the expected
   loudness meets it, never closer than BOOST_HEADROOM_DB to the ceiling.

How the mix is measured without holding it: K-weighting is linear, so the
K-weighted mix is the sum of the K-weighted sounds at their places, and the
energy of a sum over a 100 ms hop is the parts' energies plus twice their
cross products.  Each sound is K-weighted once per version (original,
shaped), and reduced on the spot to its energy per hop at each place it
sounds (a cumulative-sum lookup) and its cross products with the tones it
overlaps.  The result equals the meter run on the rendered track
(tests/test_levels.py) at a fraction of the cost, and memory grows with the
number of cues, never with the length of the routine.

The modules: plan.py (the two plans), clips.py (a cue levelled and shaped),
meter.py (the analytic meter and the peak bounds of tones), shaper.py (the
cue shaper thread), memo.py (the measurements kept on disk, sealed).
"""

from voiceflex.audio.levels.clips import Leveled
from voiceflex.audio.levels.plan import LevelPlan, exact_levels, level_voice, stream_levels

__all__ = ["LevelPlan", "Leveled", "exact_levels", "level_voice", "stream_levels"]
