"""Run the voiceflex CLI with a starved renderer: each rendered chunk comes SECONDS late (argv[1]).

For tests of the player's guarantee that the device never passes the
renderer: `python tests/helpers/slow_render.py 0.02 play ROUTINE` plays as a loaded
machine would render, whatever the device's pace.
"""

import sys
import time

from voiceflex import cli, planned

delay = float(sys.argv[1])
real_render = planned.render


def slow_render(*args, **kwargs):
    for chunk in real_render(*args, **kwargs):
        time.sleep(delay)
        yield chunk


planned.render = slow_render
sys.exit(cli.main(sys.argv[2:]))
