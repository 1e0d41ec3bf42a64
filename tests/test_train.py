import torch
import torch.nn.functional as F

from almabench.train import augment


def per_image_augment(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """The plain path: pad, crop and flip one image at a time, from the same random draws as `augment`."""
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    out = []
    for i in range(b):
        image = F.pad(x[i], (padding, padding, padding, padding))
        image = image[:, offsets[0, i] : offsets[0, i] + h, offsets[1, i] : offsets[1, i] + w]
        out.append(image.flip(2) if flips[i] else image)
    return torch.stack(out)


def test_vectorised_crop_and_flip_equal_the_per_image_path_exactly():
    x = torch.randint(0, 256, (37, 3, 12, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fast = augment(x, 4, True, torch.Generator().manual_seed(5))
    plain = per_image_augment(x, 4, torch.Generator().manual_seed(5))
    assert fast.dtype == torch.uint8 and torch.equal(fast, plain)


def test_no_padding_and_no_flip_leave_the_batch_unchanged():
    x = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(augment(x, 0, False, torch.Generator()), x)
