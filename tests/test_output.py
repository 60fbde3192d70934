"""Output formats: parsing formats and bitrates, and the levels each OutputFormat carries."""

import dataclasses

import pytest

from voiceflex.audio import output_format as output
from voiceflex.audio.output_format import WAV, output_format
from voiceflex.errors import UsageError


def test_usage_errors_for_format_and_bitrate():
    assert output.parse_bitrate("64k") == 64 and output.parse_bitrate(128) == 128
    assert output.parse_bitrate(" 32K ") == 32
    for bad in ["63k", "fast", "320k", "", "-64k"]:
        with pytest.raises(UsageError, match="is not one"):
            output.parse_bitrate(bad)
    # MPEG-2 has them, but the encoder's distortion would break the -1 dBTP peak limit.
    for low in ["8k", "16k", "24k"]:
        with pytest.raises(UsageError, match="too low") as caught:
            output.parse_bitrate(low)
        assert "32k" in caught.value.hint
    with pytest.raises(UsageError):
        output.check_format("ogg")
    with pytest.raises(UsageError):
        output_format("mp3", "24k")


def test_wav_is_mixed_at_the_target_under_its_own_ceiling():
    assert WAV == output_format("WAV", "not a bitrate: WAV has none")
    assert (WAV.format, WAV.kbps) == ("wav", 0)
    assert (WAV.target_lufs, WAV.max_true_peak_dbtp) == (-16.0, -1.0)
    assert WAV.mix_lufs == -16.0 and WAV.ceiling_dbtp == pytest.approx(-1.2)
    assert WAV.ceiling_dbtp < WAV.max_true_peak_dbtp


@pytest.mark.parametrize("bitrate,ceiling", [("32k", -2.6), ("48k", -2.1), ("64k", -1.7), ("128k", -1.3)])
def test_mp3_is_mixed_louder_and_lower_in_peak_by_bitrate(bitrate, ceiling):
    mp3 = output_format("mp3", bitrate)
    assert mp3.bitrate == bitrate and (mp3.target_lufs, mp3.max_true_peak_dbtp) == (-16.0, -1.0)
    assert mp3.mix_lufs == pytest.approx(-15.55)  # LAME decodes 0.45 dB quieter
    assert mp3.ceiling_dbtp == pytest.approx(ceiling)


def test_an_output_format_cannot_be_changed():
    with pytest.raises(dataclasses.FrozenInstanceError):
        WAV.ceiling_dbtp = 0.0  # type: ignore[misc]
