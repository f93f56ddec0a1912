"""``ofer facemodel export``: write one random head of a face model as a mesh file."""

from __future__ import annotations

import argparse

import torch

from .outputs import output_file


def register(subparsers) -> None:
    parser = subparsers.add_parser("facemodel", help="face-model utilities")
    sub = parser.add_subparsers(dest="facemodel_command", metavar="ACTION")
    sub.required = True
    export = sub.add_parser("export", help="write one random head (PLY or OBJ)")
    export.add_argument("--model", default="default", help="face model: default, flame:PATH or npz:PATH")
    export.add_argument("--seed", type=int, default=0, help="random seed of the identity (and expression)")
    export.add_argument("--expression", choices=("neutral", "random"), default="neutral")
    export.add_argument("--units", choices=("m", "mm"), default="m", help="length unit written to the file")
    export.add_argument("-o", "--output", required=True, help="output mesh (.ply or .obj)")
    export.set_defaults(func=export_head)


def export_head(args: argparse.Namespace) -> int:
    from ..facemodels import load_face_model
    from ..io.mesh import save_mesh

    output_file(args.output)
    model = load_face_model(args.model)
    generator = torch.Generator().manual_seed(args.seed)
    sample = model.sample_prior(1, generator, expression=args.expression == "random")
    with torch.no_grad():
        vertices = model(sample.shape, sample.expression, sample.pose).vertices[0]
    path = save_mesh(args.output, vertices, model.faces, units=args.units)
    print(f"wrote {path} ({model.num_vertices} vertices, {model.faces.shape[0]} triangles, {args.units})")
    return 0
