"""Frozen diffusion teachers: a registry of specs and builders, and the call contract in base.py."""

from dra_pipeline.teachers import diffusers_teachers, edm, lightningdit  # noqa: F401  (register the teachers)
from dra_pipeline.teachers.base import VIEWS, Teacher, TeacherSpec
from dra_pipeline.teachers.registry import (
    create_teacher,
    list_teachers,
    register_teacher,
    teacher_from_provenance,
    teacher_spec,
)

__all__ = [
    "VIEWS",
    "Teacher",
    "TeacherSpec",
    "create_teacher",
    "list_teachers",
    "register_teacher",
    "teacher_from_provenance",
    "teacher_spec",
]
