"""Frozen diffusion teachers: a registry of specs and builders, and the call contract in base.py."""

from . import diffusers_teachers, edm, lightningdit  # noqa: F401  (register the teachers)
from .base import VIEWS, Teacher, TeacherSpec
from .registry import create_teacher, list_teachers, register_teacher, teacher_spec

__all__ = ["VIEWS", "Teacher", "TeacherSpec", "create_teacher", "list_teachers", "register_teacher", "teacher_spec"]
