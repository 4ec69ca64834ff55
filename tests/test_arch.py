from basisnet_deploy.model.arch import ARCHS, MV2, MV3_LARGE, MV3_SMALL, make_divisible, resolve


def test_make_divisible_matches_reference_rounding():
    assert make_divisible(16 * 0.5) == 8
    assert make_divisible(3) == 8  # never below the divisor
    assert make_divisible(32 * 0.35) == 16  # 11.2 -> 8 is below 90%, so 16
    assert make_divisible(44) == 48  # halves round up
    assert make_divisible(100) == 104
    assert make_divisible(91) == 88  # 88 >= 0.9 * 91, so rounding down is allowed
    assert make_divisible(960 * 0.75) == 720


def test_tables_have_the_papers_block_counts():
    assert len(MV3_LARGE.blocks) == 15
    assert len(MV3_SMALL.blocks) == 11
    assert len(MV2.blocks) == 17
    assert set(ARCHS) == {"mv3-large", "mv3-small", "mv2"}


def test_mv3_large_resolves_to_the_table_at_width_1():
    net = resolve("mv3-large", 1.0, 224)
    l11 = net.blocks[10]
    assert (l11.cin, l11.exp, l11.out, l11.kernel, l11.se) == (80, 480, 112, 3, 120)
    assert not net.blocks[0].has_expand  # L1: expansion equals input, no expand conv
    assert net.blocks[-1].size_out == 7
    assert [h.channels for h in net.head] == [960, 1280]


def test_head_only_grows_above_width_1():
    assert resolve("mv3-large", 0.5).head[-1].channels == 1280
    assert resolve("mv3-large", 1.5).head[-1].channels == 1920
    assert resolve("mv3-large", 0.5).head[0].channels == 480
    assert resolve("mv2", 0.5).head[-1].channels == 1280


def test_mv2_expansion_scales_from_scaled_input():
    net = resolve("mv2", 0.5, 128)
    b2 = net.blocks[1]
    assert b2.cin == 8 and b2.exp == make_divisible(8 * 6)
