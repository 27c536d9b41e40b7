"""Canvas nodes in the plan: order, composition, what is outpainted, and what the checker sees."""

from __future__ import annotations

from PIL import Image

from deployments.image_steps import Composite, RemoveBackground
from deployments.plan import _covers, make_plan
from deployments.request import Checkpoint, GenerationRequest, InputImage, Node
from deployments.steps import Diffuse, EachOutput, Inpaint, StepOutputs
from tests.images import png_bytes

DEMO = Checkpoint(name="demo", size=64)


def plan(nodes: tuple[Node, ...], **request: object):  # noqa: ANN201
    return make_plan(GenerationRequest(DEMO, width=128, height=64, samples=2, nodes=nodes, **request), 0)  # type: ignore[arg-type]


def test_the_seeds_cat_and_dog_example_paints_removes_composes_and_outpaints() -> None:
    nodes = (
        Node(0, 0, 64, 64, prompt="a cat", remove_background=True),
        Node(64, 0, 64, 64, prompt="a dog", remove_background=True),
    )
    steps = plan(nodes, prompt="a cat and a dog", safe=True).steps
    assert [type(step) for step in steps] == [Diffuse, RemoveBackground, Diffuse, RemoveBackground, Composite, Inpaint]
    assert [steps[0].prompt, steps[2].prompt, steps[5].prompt] == ["a cat", "a dog", "a cat and a dog"]
    assert steps[0].size == steps[2].size == (64, 64) and steps[5].size == (128, 64)
    composite = steps[4]
    assert composite.offsets == ((0, 0), (64, 0)) and (composite.width, composite.height) == (128, 64)
    assert composite.inputs == (StepOutputs(1, 0), StepOutputs(1, 1), StepOutputs(3, 0), StepOutputs(3, 1))
    assert steps[5].source == EachOutput(4) and steps[5].mask is None and steps[5].per_image
    assert [step.safe for step in steps if hasattr(step, "seeds")] == [False, False, True]


def test_nodes_that_cover_the_canvas_are_not_outpainted_and_each_is_checked() -> None:
    nodes = (Node(0, 0, 128, 64, prompt="a field"), Node(32, 16, 64, 32, prompt="a cow"))  # the second over the first
    steps = plan(nodes, prompt="a cow in a field", safe=True).steps
    assert [type(step) for step in steps] == [Diffuse, Diffuse, Composite]
    assert steps[2].offsets == ((0, 0), (32, 16))
    assert [step.safe for step in steps[:2]] == [True, True]


def test_without_a_prompt_a_node_cut_out_after_painting_has_its_painting_checked() -> None:
    """Found by tests/deployments/test_invoke_property.py: the check was put on the cut-out step."""
    nodes = (Node(0, 0, 64, 64, prompt="a cat", remove_background=True), Node(64, 0, 64, 64, prompt="a dog"))
    steps = plan(nodes, safe=True).steps
    assert [type(step) for step in steps] == [Diffuse, RemoveBackground, Diffuse, Composite]
    assert [steps[0].safe, steps[2].safe] == [True, True]


def test_without_a_prompt_what_no_node_covers_stays_transparent() -> None:
    steps = plan((Node(0, 0, 64, 64, prompt="a cat"),)).steps
    assert [type(step) for step in steps] == [Diffuse, Composite]


def test_a_node_with_an_image_is_fitted_into_its_box() -> None:
    image = InputImage(png_bytes(32, 32), 32, 32)
    steps = plan((Node(0, 0, 64, 64, image=image, fit="contain", anchor="center-center", strength=0.5),)).steps
    assert isinstance(steps[0], Diffuse) and steps[0].source == image  # contain: a square fills the square box
    steps = plan((Node(0, 0, 128, 64, image=image, fit="contain"),), prompt="x").steps
    assert isinstance(steps[0], Inpaint)  # a square in a wide box leaves its sides to paint


def test_coverage_is_exact() -> None:
    assert _covers((Node(0, 0, 64, 64), Node(64, 0, 64, 64)), (128, 64))
    assert not _covers((Node(0, 0, 64, 64), Node(72, 0, 56, 64)), (128, 64))  # an 8-pixel gap
    assert _covers((Node(0, 0, 128, 64), Node(8, 8, 64, 32)), (128, 64))


def test_composition_pastes_later_nodes_over_earlier_ones() -> None:
    composite = Composite(
        inputs=(StepOutputs(0, 0), StepOutputs(1, 0)), offsets=((0, 0), (16, 0)), samples=1, width=48, height=16
    )
    red, blue = Image.new("RGB", (32, 16), "red"), Image.new("RGBA", (32, 16), (0, 0, 255, 255))
    (canvas,) = composite.run([red, blue])
    assert canvas.getpixel((8, 8)) == (255, 0, 0, 255) and canvas.getpixel((24, 8)) == (0, 0, 255, 255)
    assert composite.run([None, blue]) == [None]
