"""Distillation: losses, the teacher/student collection loop, sweeps over student sizes and losses."""
