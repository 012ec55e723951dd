"""The Broden reader: published layout in, label planes out (R + 256 G decoding, image-level
labels over every pixel, one plane per map, padding across a batch)."""
import numpy as np
import torch
from PIL import Image

from disentangle.data.broden import Broden
from disentangle.data.images import probe_images


def _write_broden(root):
    (root / "images").mkdir(parents=True)
    (root / "label.csv").write_text(
        "number,name,category,frequency,coverage,syns\n0,-,-,0,0,\n1,red-c,color(2),2,1,\n"
        "2,sky,object(2);part(1),2,1,\n300,wheel,part(5);object(1),1,1,\n301,street-s,scene(1),1,1,\n")
    index = "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"
    for i in range(2):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "images" / f"im{i}.jpg")
        obj = np.zeros((4, 4, 3), np.uint8)
        obj[:2, :, 0] = 2                                  # sky on the top half
        Image.fromarray(obj).save(root / "images" / f"im{i}_object.png")
        part = np.zeros((4, 4, 3), np.uint8)
        part[3, 3] = (300 % 256, 300 // 256, 0)            # wheel: id 300 needs the G byte
        Image.fromarray(part).save(root / "images" / f"im{i}_part_1.png")
    index += "im0.jpg,train,8,8,4,4,,im0_object.png,im0_part_1.png;im0_part_1.png,,301,\n"
    index += "im1.jpg,train,8,8,4,4,,im1_object.png,,,,\n"
    (root / "index.csv").write_text(index)


def test_broden_planes(tmp_path):
    _write_broden(tmp_path)
    probe = probe_images(str(tmp_path), None).source
    assert isinstance(probe, Broden) and len(probe) == 2
    assert probe.categories == ["color", "object", "part", "scene"]
    assert probe.concepts[1] == ("object", "sky") and probe.concepts[299] == ("part", "wheel")
    labels = probe.labels(np.array([0, 1]))
    # Slots: object x1, part x2 (image 0 has two part maps), scene x1.
    assert labels.plane_category.tolist() == [1, 2, 2, 3]
    p = labels.planes
    assert p.shape == (2, 4, 4, 4)
    assert (p[:, 0, :2] == 2).all() and (p[:, 0, 2:] == 0).all()
    assert p[0, 1, 3, 3] == 300 and p[0, 2, 3, 3] == 300 and p[1, 1:3].sum() == 0
    assert (p[0, 3] == 301).all() and (p[1, 3] == 0).all()
    cat = probe.label_category()
    assert cat[2] == 1 and cat[300] == 2 and cat[301] == 3 and cat[0] == -1
    assert probe.image(0).size == (8, 8)
    assert torch.equal(labels.planes, probe.labels(np.array([0, 1])).planes)
