"""Image loading, annotations (VOC XML → boxes → masks; segmentation mask PNGs), labels from file
names and the ImageNet class index."""

from tfxai.data.annotations import (
    Annotation,
    AnnotationError,
    boxes_to_mask,
    boxes_to_masks,
    parse_voc,
)
from tfxai.data.dataset import (
    Batch,
    DatasetError,
    ImageSet,
    Sample,
    discover,
    image_seeds,
    iter_batches,
    load_batch,
    load_images,
    shard,
)
from tfxai.data.imagenet import class_index, class_name, parse_label, synset_to_index
from tfxai.data.images import BoxTransform, ImageLoadError, load_image, resize_image, to_rgb
from tfxai.data.masks import GroundTruth, MaskError, load_mask, mask_of
from tfxai.data.names import compile_name_pattern

__all__ = [
    "Annotation", "AnnotationError", "Batch", "BoxTransform", "DatasetError", "GroundTruth",
    "ImageLoadError", "ImageSet", "MaskError", "Sample", "boxes_to_mask", "boxes_to_masks",
    "class_index", "class_name", "compile_name_pattern", "discover", "image_seeds",
    "iter_batches", "load_batch", "load_image", "load_images", "load_mask", "mask_of",
    "parse_label", "parse_voc", "resize_image", "shard", "synset_to_index", "to_rgb",
]
