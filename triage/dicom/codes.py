"""Coded concepts written into the objects we produce."""

from __future__ import annotations

from pydicom.sr.codedict import codes

#: Segmented property category: the pneumothorax is an abnormal structure.
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = codes.SCT.MorphologicallyAbnormalStructure
#: Segmented property type.
PNEUMOTHORAX = codes.SCT.Pneumothorax
#: Anatomic region of the segment.
LUNG = codes.SCT.Lung
#: Algorithm family (CID 7162).
ARTIFICIAL_INTELLIGENCE = codes.DCM.ArtificialIntelligence
#: Purpose of reference of the ContributingEquipmentSequence item describing us.
PROCESSING_EQUIPMENT = codes.DCM.ProcessingEquipment
