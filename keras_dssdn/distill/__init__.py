"""Knowledge distillation: teacher logits keyed by clip, teachers run over a split, the KD loss.

* :mod:`keras_dssdn.distill.logits` -- the teacher-logits file (the one owner of its format; CSV interchange);
* :mod:`keras_dssdn.distill.teacher` -- run teachers (run folders, ``.keras``, ``.tflite``; ensembles) over a
  split; :class:`~keras_dssdn.distill.teacher.TeacherTargets` for the training pipeline;
* :mod:`keras_dssdn.distill.loss` -- the distillation loss and the label accuracy of ``(B, 2K)`` targets.

Training with a teacher: ``dssdn-train ... teacher=FILE.npz kd_temperature=2 kd_weight=0.5`` (docs/distillation.md).
"""

from keras_dssdn.distill.logits import TeacherLogits, import_csv
from keras_dssdn.distill.teacher import TeacherTargets, load_teacher, write_logits

__all__ = ["TeacherLogits", "TeacherTargets", "import_csv", "load_teacher", "write_logits"]
