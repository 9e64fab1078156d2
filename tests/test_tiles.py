import pytest

from tilesearch import GAP, TilesearchError, TileSpec, parse_tile, tile_config


@pytest.mark.parametrize(
    "text, rows, cols",
    [("GAP", None, None), ("gap", None, None), ("HxW", None, None), ("7xW", 7, None), ("Hx3", None, 3),
     ("7x7", 7, 7), ("3x5", 3, 5), (" 13 x 13 ", 13, 13), ("1x1", 1, 1)],
)
def test_parse_accepts_every_documented_form(text, rows, cols):
    assert parse_tile(text) == TileSpec(rows, cols)


@pytest.mark.parametrize("text", ["0xW", "-3xW", "7x", "axb", "Wx7", "7xH", "x7", "7", "", "3x0", "1.5x2"])
def test_parse_rejects_with_one_line_naming_value_and_forms(text):
    with pytest.raises(TilesearchError) as error:
        parse_tile(text)
    message = str(error.value)
    assert repr(text) in message
    assert "kxW" in message and "Hxk" in message and "\n" not in message


@pytest.mark.parametrize("tile", ["GAP", "7xW", "Hx3", "7x7", "3x5"])
def test_str_round_trips(tile):
    assert str(parse_tile(tile)) == tile


def test_larger_tile_clips_to_tensor():
    assert parse_tile("9xW").resolve(7, 7) == (7, 7)  # 9xW on a 7-row tensor is GAP
    assert parse_tile("9xW").num_tiles(7, 7) == 1
    assert parse_tile("13x13").resolve(7, 10) == (7, 10)
    assert parse_tile("Hx3").resolve(5, 8) == (5, 3)


def test_num_tiles_counts_partial_edge_tiles():
    assert parse_tile("3xW").num_tiles(7, 5) == 3  # rows 0-2, 3-5, 6
    assert parse_tile("2x2").num_tiles(5, 5) == 9
    assert parse_tile("7x7").num_tiles(14, 14) == 4


def test_tile_config_uniform_and_mapping():
    names = ["a.se", "b.se"]
    assert tile_config(names, "7xW") == {"a.se": TileSpec(7, None), "b.se": TileSpec(7, None)}
    assert tile_config(names, {"b.se": "1x1"}) == {"a.se": GAP, "b.se": TileSpec(1, 1)}
    with pytest.raises(TilesearchError, match="c.se"):
        tile_config(names, {"c.se": "7xW"})


def test_tilespec_rejects_non_positive_sizes():
    with pytest.raises(TilesearchError):
        TileSpec(0, None)
