"""Dataset sources: folders, manifests, webdataset shards, synthetic scenes, and the dispatcher."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from cliplab.data.images import decode_image
from cliplab.data.sources import (
    ImageSource,
    SourceError,
    expand_braces,
    image_folder,
    manifest,
    open_source,
    webdataset,
)


def png(color=(255, 0, 0), size=(6, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


# --- image folders ------------------------------------------------------------------------------
def test_folder_labels_from_subfolders(tmp_path):
    write(tmp_path / "dog" / "b.PNG", png())
    write(tmp_path / "dog" / "a.jpg", png())
    write(tmp_path / "cat" / "deep" / "x.webp", png())
    write(tmp_path / "cat" / "notes.txt", "not an image")
    write(tmp_path / "cat" / ".hidden.png", png())
    write(tmp_path / ".cache" / "y.png", png())
    src = image_folder(tmp_path)
    assert isinstance(src, ImageSource) and len(src) == 3
    assert [Path(i.id).relative_to(tmp_path).as_posix() for i in src] == ["cat/deep/x.webp", "dog/a.jpg", "dog/b.PNG"]
    assert [i.label for i in src] == ["cat", "dog", "dog"]
    assert src.classes == ["cat", "dog"]
    assert src.items[1].read_bytes() == png()


def test_stray_top_level_file_keeps_subfolder_labels(tmp_path):
    write(tmp_path / "top.png", png())
    write(tmp_path / "sub" / "inner.png", png())
    with pytest.warns(UserWarning, match="'top.png'"):
        src = image_folder(tmp_path)
    assert src.classes == ["sub"]
    assert {Path(i.id).name: i.label for i in src} == {"top.png": None, "inner.png": "sub"}
    assert not src.notes  # said once, as the warning
    with pytest.raises(SourceError, match="outside class subfolders"):
        image_folder(tmp_path, labels="folder")
    assert image_folder(tmp_path / "sub", labels=None).classes is None


def test_folder_without_subfolders_has_no_labels(tmp_path):
    write(tmp_path / "a.png", png())
    write(tmp_path / "b.png", png())
    src = image_folder(tmp_path)
    assert src.classes is None and all(i.label is None for i in src) and not src.notes


def test_folder_numeric_classes_sort_as_numbers(tmp_path):
    for c in ["10", "2", "1"]:
        write(tmp_path / c / "a.png", png())
    assert image_folder(tmp_path).classes == ["1", "2", "10"]


def test_empty_folder_is_a_clear_error(tmp_path):
    write(tmp_path / "readme.txt", "hi")
    with pytest.raises(SourceError, match="no images found under"):
        image_folder(tmp_path)


def test_items_pickle_for_worker_processes(tmp_path):
    write(tmp_path / "a" / "x.png", png())
    item = image_folder(tmp_path).items[0]
    assert pickle.loads(pickle.dumps(item)).read_bytes() == png()


# --- manifests ----------------------------------------------------------------------------------
def test_csv_manifest_multi_caption_and_meta(tmp_path):
    write(tmp_path / "img" / "a.png", png())
    write(tmp_path / "img" / "b.png", png((0, 0, 255)))
    write(
        tmp_path / "m.csv",
        "filepath,title,label,split\n"
        "img/a.png,a red thing,red,train\n"
        'img/b.png,"a blue, wide thing",blue,test\n'
        "img/a.png,another red caption,red,train\n"
        "img/missing.png,ghost,red,train\n"
        "img/missing.png,ghost again,red,train\n"
        "img/./b.png,same file as b,blue,test\n",
    )
    src = manifest(tmp_path / "m.csv")
    assert [Path(i.id).name for i in src] == ["a.png", "b.png"]
    a, b = src.items
    assert a.captions == ["a red thing", "another red caption"]
    assert b.captions == ["a blue, wide thing", "same file as b"]
    assert (a.label, b.label) == ("red", "blue") and src.classes == ["blue", "red"]
    assert a.meta == {"split": "train"}
    assert [(Path(s.id).name, s.reason) for s in src.skipped] == [("missing.png", "file not found")]
    assert b.read_bytes() == png((0, 0, 255))


def test_tsv_with_root_and_explicit_columns(tmp_path):
    write(tmp_path / "data" / "x.png", png())
    write(tmp_path / "lists" / "m.tsv", "img\tdesc\tsource\nx.png\thello there\tweb\n")
    src = manifest(tmp_path / "lists" / "m.tsv", image_col="img", caption_col="desc", root=tmp_path / "data")
    (item,) = src.items
    assert item.captions == ["hello there"] and item.meta == {"source": "web"} and item.label is None
    assert src.classes is None


def test_jsonl_manifest(tmp_path):
    write(tmp_path / "x.png", png())
    write(tmp_path / "y.png", png())
    lines = [
        {"image": "x.png", "text": ["one", "two"], "class": 3, "w": 6},
        "not json at all",
        {"image": str(tmp_path / "y.png"), "text": "three", "class": 10},
        {"image": "x.png", "text": "four", "class": 3},
    ]
    write(tmp_path / "m.jsonl", "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n")
    src = manifest(tmp_path / "m.jsonl")
    x, y = src.items
    assert x.captions == ["one", "two", "four"] and x.label == "3" and x.meta == {"w": 6}
    assert y.captions == ["three"] and y.label == "10"
    assert src.classes == ["3", "10"]
    assert [s.reason for s in src.skipped] == ["invalid JSON line"]


def test_manifest_duplicates_are_said(tmp_path):
    write(tmp_path / "a.png", png())
    write(tmp_path / "b.png", png())
    write(tmp_path / "m.csv", "image,caption,label\na.png,one,circle\nb.png,two,star\na.png,three,circle\n")
    src = manifest(tmp_path / "m.csv")
    assert src.notes == ["3 rows -> 2 images, 1 image named by several rows (captions merged)"]


def test_conflicting_labels_are_an_error_or_keep_the_first(tmp_path):
    write(tmp_path / "a.png", png())
    write(tmp_path / "conflict.csv", "image,label\na.png,circle\na.png,star\n")
    with pytest.raises(SourceError, match=r"'a.png' is 'circle' on line 2 but 'star' on line 3.*on_conflict='first'"):
        manifest(tmp_path / "conflict.csv")
    src = manifest(tmp_path / "conflict.csv", on_conflict="first")
    assert [i.label for i in src] == ["circle"] and src.classes == ["circle"]
    assert any("conflicting labels" in n for n in src.notes)
    with pytest.raises(SourceError, match="on_conflict='last'"):
        manifest(tmp_path / "conflict.csv", on_conflict="last")


def test_skips_are_counted_by_kind(tmp_path):
    write(tmp_path / "a.png", png())
    write(tmp_path / "bad.jsonl", '{"image": "a.png", "caption": "x"}\n{broken\n{"image": "a.png", "caption": "y"}\n')
    src = manifest(tmp_path / "bad.jsonl")
    assert len(src) == 1 and src.items[0].captions == ["x", "y"]
    assert [(s.kind, s.reason) for s in src.skipped] == [("row", "invalid JSON line")]
    make_shard(tmp_path / "s" / "000.tar", {"k": {"png": png()}})
    shards = webdataset(str(tmp_path / "s" / "{000..001}.tar"))
    assert [(s.kind, s.reason) for s in shards.skipped] == [("shard", "shard not found")]


def test_caption_lists_in_jsonl_and_csv(tmp_path):
    write(tmp_path / "a.jpg", png())
    write(tmp_path / "m.jsonl", json.dumps({"image": "a.jpg", "captions": ["first", "second"]}) + "\n")
    assert manifest(tmp_path / "m.jsonl").items[0].captions == ["first", "second"]
    write(tmp_path / "m.csv", 'image,captions\na.jpg,"[""one"", ""two""]"\n')
    assert manifest(tmp_path / "m.csv").items[0].captions == ["one", "two"]


def test_manifest_without_image_column_names_the_fix(tmp_path):
    write(tmp_path / "m.csv", "url,caption\nhttp://x/y.png,hi\n")
    with pytest.raises(SourceError, match="image_col="):
        manifest(tmp_path / "m.csv")
    src = manifest(tmp_path / "m.csv", image_col="url")
    assert len(src) == 0 and "download" in src.skipped[0].reason
    with pytest.raises(SourceError, match="not a column"):
        manifest(tmp_path / "m.csv", image_col="nope")


# --- webdataset ---------------------------------------------------------------------------------
def make_shard(path: Path, samples: dict[str, dict[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for key, members in samples.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_brace_expansion():
    assert expand_braces("s/{000..003}.tar") == ["s/000.tar", "s/001.tar", "s/002.tar", "s/003.tar"]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("x{8..11}") == ["x8", "x9", "x10", "x11"]
    assert expand_braces("{0..6..3}") == ["0", "3", "6"]
    assert expand_braces("{x}{a,{b,c}}") == ["{x}a", "{x}b", "{x}c"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_webdataset_shards(tmp_path):
    meta = {"label": "dog", "width": 6}
    make_shard(tmp_path / "s" / "000.tar", {
        "a": {"jpg": png(), "txt": b"a red box", "cls": b"1"},
        "b": {"png": png((0, 255, 0)), "json": json.dumps(meta).encode()},
    })  # fmt: skip
    make_shard(tmp_path / "s" / "001.tar", {
        "d/c": {"webp": png(), "seg.png": png(), "txt": "caf\u00e9".encode()},
        "orphan": {"txt": b"x"},
    })  # fmt: skip
    pattern = str(tmp_path / "s" / "{000..001}.tar")
    src = open_source(pattern)
    shard0 = str(tmp_path / "s" / "000.tar")
    assert [i.id for i in src] == [f"{shard0}#a", f"{shard0}#b", f"{tmp_path / 's' / '001.tar'}#d/c"]
    a, b, c = src.items
    assert a.captions == ["a red box"] and a.label == "1"
    assert b.label == "dog" and b.meta == meta and b.captions == []
    assert c.captions == ["caf\u00e9"]
    assert decode_image(b.read_bytes()).getpixel((0, 0)) == (0, 255, 0)
    assert src.classes == ["1", "dog"]
    assert [s.reason for s in src.skipped] == ["no image member (jpg/jpeg/png/webp)"]
    assert pickle.loads(pickle.dumps(c)).read_bytes() == png()


def test_pattern_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(SourceError, match=r"no shard file matches .*\{000\.\.009\}\.tar"):
        webdataset(str(tmp_path / "{000..009}.tar"))


def test_corrupt_shard_is_skipped(tmp_path):
    good = make_shard(tmp_path / "0.tar", {"a": {"png": png()}})
    write(tmp_path / "1.tar", b"this is certainly not a tar archive" * 40)
    src = webdataset(str(tmp_path / "{0,1,2}.tar"))
    assert [i.id for i in src] == [f"{good}#a"]
    reasons = {Path(s.id).name: s.reason for s in src.skipped}
    assert reasons["1.tar"].startswith("corrupt shard") and reasons["2.tar"] == "shard not found"


def test_truncated_shard_keeps_earlier_samples(tmp_path):
    big = make_shard(tmp_path / "t.tar", {"a": {"png": png()}, "b": {"png": b"\x01" * 5000}})
    data = big.read_bytes()
    big.write_bytes(data[: 2048 + 600])  # header of b survives, its data is cut
    src = webdataset(str(big))
    assert [i.id.split("#")[1] for i in src] == ["a"]
    reasons = {s.id.split("#")[-1]: s.reason for s in src.skipped}
    assert reasons["b"] == "truncated member" and reasons[str(big)].startswith("corrupt shard")


@pytest.mark.parametrize("block", [b"junk" * 128, bytes(512)])
def test_damaged_header_mid_shard_is_reported(tmp_path, block):
    shard = make_shard(tmp_path / "d.tar", {k: {"png": b"\x01" * 700} for k in "abc"})
    data = bytearray(shard.read_bytes())
    data[1536:2048] = block  # the header of sample b (a: 512 header + 1024 padded data)
    shard.write_bytes(bytes(data))
    src = webdataset(str(shard))
    assert [i.id.split("#")[1] for i in src] == ["a"]
    assert "tar header at byte 1536" in src.skipped[0].reason


# --- synthetic and dispatch ---------------------------------------------------------------------
def test_synthetic_source():
    pytest.importorskip("cliplab.data.synthetic")
    src = open_source("synthetic:5:3", attribute="shape")
    assert len(src) == 5 and src.name == "synthetic-test-3"
    item = src.items[0]
    im = decode_image(item.read_bytes())
    assert im.size == (64, 64)
    assert item.label == item.meta["objects"][0]["shape"] and item.label in src.classes
    assert len(item.captions) == 1 and item.captions[0]
    again = open_source("synth:5:3", attribute="shape")
    assert [i.read_bytes() for i in again] == [i.read_bytes() for i in src]
    assert open_source("synthetic:2").classes is None


def test_open_source_dispatch(tmp_path):
    write(tmp_path / "f" / "k" / "a.png", png())
    assert open_source(tmp_path / "f").classes == ["k"]
    write(tmp_path / "m.csv", "image\nf/k/a.png\n")
    assert len(open_source(str(tmp_path / "m.csv"))) == 1
    make_shard(tmp_path / "one.tar", {"z": {"png": png()}})
    assert len(open_source(tmp_path / "one.tar")) == 1


@pytest.mark.parametrize("spec", ["nothing/here.xyz", "synthetic:many", "synthetic:3:1:2"])
def test_open_source_errors_are_one_line(tmp_path, spec):
    with pytest.raises(SourceError) as info:
        open_source(spec)
    message = str(info.value)
    assert "\n" not in message and repr(spec) in message


def test_manifest_in_wrong_encoding_is_one_clear_line(tmp_path):
    write(tmp_path / "m.csv", "image,caption\nx.png,caf\u00e9\n".encode("utf-16"))
    with pytest.raises(SourceError, match="save it as UTF-8"):
        manifest(tmp_path / "m.csv")


def test_shard_links_and_devices_are_followed_or_listed(tmp_path):
    path = tmp_path / "s.tar"
    red = png()
    with tarfile.open(path, "w") as tf:
        def add(name: str, kind: bytes, data: bytes = b"", linkname: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, linkname, len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)

        add("a.png", tarfile.REGTYPE, red)
        add("a.txt", tarfile.REGTYPE, b"a red square")
        add("b.png", tarfile.LNKTYPE, linkname="a.png")  # a valid hard-linked image: kept
        add("b.txt", tarfile.SYMTYPE, linkname="/etc/passwd")
        add("c.png", tarfile.SYMTYPE, linkname="a.png")
        add("d.png", tarfile.LNKTYPE, linkname="/etc/hostname")
        add("e.png", tarfile.CHRTYPE)
        add("f.png", tarfile.FIFOTYPE)
    src = webdataset(str(path))
    assert [it.id.rpartition("#")[2] for it in src.items] == ["a", "b"]
    assert src.items[1].read_bytes() == red and decode_image(src.items[1].read_bytes()).size == (6, 4)
    assert src.items[0].captions == ["a red square"] and src.items[1].captions == []
    listed = {(s.id.rpartition("#")[2], s.reason, s.kind) for s in src.skipped}
    assert listed == {
        ("b.txt", "symbolic link member (not followed)", "note"),
        ("c.png", "symbolic link member (not followed)", "image"),
        ("d.png", "hard link to a file not in this shard", "image"),
        ("e.png", "device member", "image"),
        ("f.png", "fifo member", "image"),
    }
