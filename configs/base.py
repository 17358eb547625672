"""Defaults shared by every experiment; each configs/<name>.py changes only what differs."""

import ml_collections
from ml_collections import config_dict


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = 'segmentation'  # segmentation | classification | multilabel
  config.seed = 1337
  config.data = _data()
  config.model = _model()
  config.train = _train()
  config.eval = _eval()
  config.predict = _predict()
  config.export = _export()
  config.runtime = _runtime()
  config.summaries = _summaries()
  return config


def _data() -> ml_collections.ConfigDict:
  """Where the pictures come from, how labels are read, and the input pipeline."""
  data = ml_collections.ConfigDict()
  data.source = 'tfds'  # tfds | folder | synthetic | files (your own pictures and masks)
  data.tfds_name = 'oxford_iiit_pet'  # tfds: any data set with a picture and a mask feature.
  data.image_key = 'image'  # tfds: the picture feature of data.tfds_name.
  data.mask_key = 'segmentation_mask'  # tfds: its mask feature (grey class-id values).
  data.data_dir = config_dict.placeholder(str)  # None: TFDS's own default.
  data.manual_dir = config_dict.placeholder(str)  # Holds images.tar.gz + annotations.tar.gz.
  data.download = True  # tfds source only: may TFDS fetch the dataset from the network?
  data.folder = config_dict.placeholder(str)  # The official extracted layout.
  data.skip_bad_examples = False  # folder: skip (and log) unusable examples instead of stopping.
  # Every picture is resized to this side, or (height, width) (data.resize='square').
  data.image_size = config_dict.placeholder(object)
  data.image_size = 200
  # square: every picture resized to data.image_size (the book's); none: training on random
  # crops of data.crop_size at the pictures' own resolution, evaluation sliding a window over
  # whole pictures (predict.window, predict.stride) (BUILD.md "Large pictures").
  data.resize = 'square'
  data.crop_size = (512, 512)  # data.resize=none: (height, width) of every training crop.
  # data.resize=none: where training crops lie. uniform: anywhere in the picture;
  # class_balanced: data.crop_centred_fraction of the crops centred on a pixel of a class drawn
  # with probability (its share of the training pixels)^data.crop_temperature (0: every class
  # alike, 1: as its pixels occur), the rest uniform; a rare class is then seen in many crops.
  data.crop_sampling = 'uniform'
  data.crop_temperature = 0.0
  data.crop_centred_fraction = 1.0
  # The label a model learns: the task's own for segmentation (segmentation_mask, also when
  # empty); classification names an integer feature: species (cat/dog) or label (breed).
  data.label_feature = 'segmentation_mask'
  # One name per class, in class-id order. Trimap values 1, 2, 3 for Oxford; files
  # classification: empty takes the class sub-folders' names.
  data.class_names = ('pet', 'background', 'outline')
  # How mask values become class ids (see BUILD.md "Your own data"). label_map: 'raw:class'
  # pairs such as '0:0,255:1' ('' : values are class ids; Oxford's trimaps map 1,2,3 -> 0,1,2).
  data.label_map = ''
  data.mask_colors = ()  # Colour masks: one (r, g, b) per class, in class order.
  data.ignore_index = config_dict.placeholder(int)  # A mask value counted nowhere (VOC: 255).
  # Pictures that are not photos (BUILD.md "Pictures with more bands"). 0: 8-bit RGB photos
  # (JPEG, PNG, GIF, BMP) as TensorFlow decodes them. N: rasters of N bands (GeoTIFF/TIFF, .npy
  # (H, W, C), PNG at its own bit depth; data.source=files), kept in their own values and
  # normalised per band (mean, std of the training split) by the model's first layer.
  data.bands = 0
  data.read_bands = ()  # Band numbers to read of each file (from 1, as GDAL's); (): all.
  # Three band numbers (from 1, among those read) that make the viewable picture of overlays,
  # TensorBoard and explanations; (): 1, 2, 3 (one band: grey).
  data.rgb_bands = ()
  # A value that marks a missing pixel (in every band): the ignore label in its mask, 0 after
  # normalisation. NaN pixels of a float raster are missing too.
  data.nodata = config_dict.placeholder(float)
  data.band_stats = ()  # ((mean, ...), (std, ...)) per band instead of the training split's.
  data.files = _files()
  # folder and synthetic: this share of every breed of trainval.txt is held out as the
  # `validation` split, which evaluation, best_model.keras and any tuning read; test.txt is
  # read by --mode=score alone. files without validation folders: this share of train, chosen
  # by a hash of each stem. 0: no hold-out, evaluation reads the test split.
  data.validation_fraction = 0.15
  # TFDS split strings; None picks the source's default: for tfds the book's hold-out of the
  # last 1,000 images (train+test[:-1000] / test[-1000:] / test[-1000:]), for folder and
  # synthetic train / validation / test (see validation_fraction).
  data.train_split = config_dict.placeholder(str)
  data.eval_split = config_dict.placeholder(str)
  data.test_split = config_dict.placeholder(str)  # What --mode=score reports on.
  data.shuffle_buffer = 1024
  data.deterministic = False  # Training input order; evaluation is always deterministic.
  # auto (memory if the decoded split fits cache_budget_gb) | memory | none | a file path prefix.
  data.cache = 'auto'
  data.cache_budget_gb = 4.0
  data.autotune_ram_budget_gb = 0.0  # Cap on tf.data autotuning's buffers; 0: TF's default.
  data.augment = _augment()
  # tf.data service: decode and augment on separate CPU workers (python -m data.service).
  data.service_address = ''  # e.g. grpc://dispatcher:5050; empty: in-process input pipeline.
  data.service_mode = 'parallel_epochs'  # parallel_epochs | dynamic_sharding
  data.synthetic = _synthetic()
  data.annotations = _annotations()
  return data


def _files() -> ml_collections.ConfigDict:
  """data.source=files: folders per split; masks pair with pictures by stem + mask_suffix."""
  files = ml_collections.ConfigDict()
  for split in ('train', 'validation', 'test'):
    files[f'{split}_images'] = config_dict.placeholder(str)
    files[f'{split}_masks'] = config_dict.placeholder(str)
    files[f'{split}_list'] = config_dict.placeholder(str)  # Stems to take, one a line.
  files.mask_suffix = ''  # e.g. '_mask': a.jpg pairs with a_mask.png.
  files.image_suffix = ''  # e.g. '_leftImg8bit': stripped from picture stems before pairing.
  return files


def _annotations() -> ml_collections.ConfigDict:
  """Masks drawn from annotators' shapes (data/annotations.py): a split's masks field names a
  COCO .json, a CVAT for images 1.1 .xml, or a folder of LabelMe .json files."""
  annotations = ml_collections.ConfigDict()
  annotations.crowd = 'ignore'  # COCO iscrowd / CVAT occluded shapes: 'ignore' or 'class'.
  annotations.class_priority = ()  # Class names, lowest first: overlaps go to the later one.
  annotations.line_width = 10  # Pixels: LabelMe lines (labelme's own width), CVAT polylines.
  return annotations


def _augment() -> ml_collections.ConfigDict:
  """See data.augment.Augmentation; image and mask get the same flip and crop."""
  augment = ml_collections.ConfigDict()
  augment.flip = True
  augment.min_crop_fraction = 1.0  # <1: random crops of at least this side fraction.
  augment.max_aspect_ratio = 1.0  # >1: crops' height/width ratio in [1/r, r].
  # data.resize=none: the picture is scaled by U(lo, hi) before its crop (MMSeg's 0.5-2.0).
  augment.scale_range = (1.0, 1.0)
  augment.color_jitter = 0.0  # >0: brightness/contrast/saturation jitter of this size.
  augment.hue = 0.0  # >0: hue rotated by up to this share of the colour wheel (<=0.5).
  augment.grayscale = 0.0  # Probability of a grey picture.
  augment.blur = 0.0  # Probability of a Gaussian blur.
  augment.noise = 0.0  # >0: pixel noise of up to this standard deviation (0-1 units).
  # Rasters (data.bands > 0): the bands color_jitter changes (() = data.rgb_bands); noise is
  # in units of each band's spread in the picture; hue and grayscale are for photos only.
  augment.jitter_bands = ()
  return augment


def _synthetic() -> ml_collections.ConfigDict:
  """data.source=synthetic: the generated stand-in set."""
  synthetic = ml_collections.ConfigDict()
  synthetic.dir = config_dict.placeholder(str)  # None: <workdir>/synthetic_pets.
  synthetic.num_trainval = 192
  synthetic.num_test = 48
  synthetic.photo_size = 96
  return synthetic


def _model() -> ml_collections.ConfigDict:
  """Which network, from which weights; each model reads only its own fields."""
  model = ml_collections.ConfigDict()
  model.name = 'book_segmentation'
  # Filled from data.bands and data.nodata when the config settles (set those): the bands the
  # model's input takes (0: RGB photos) and the value its first layer treats as missing.
  model.input_bands = 0
  model.input_nodata = config_dict.placeholder(float)
  # Where the starting weights come from, for every model (modeling/weights.py): random |
  # imagenet (xception, mobilenet_v2_unet) | a keras-hub preset name or folder | a .keras or
  # .weights.h5 file | the workdir of an earlier run (its best model). Matched by layer name
  # and shape: a head of another class count starts new.
  model.weights = 'random'
  # deeplabv3plus, segformer, unet: the keras-hub encoder (modeling/backbones.py).
  model.backbone = 'resnet50'
  # Batch norm statistics over the global batch (every replica and worker), not per replica.
  model.sync_batch_norm = False
  # Models with an encoder (mobilenet_v2_unet and the zoo): train only the decoder for this
  # many epochs (the encoder's batch norm in inference mode), then everything.
  model.freeze_encoder_epochs = 0
  # Every model's own fields, each read by the models that name it (modeling/); a config file
  # sets the ones its model reads.
  model.bn_momentum = 0.9  # Batch norm of every trained model (the book: Keras' 0.99).
  model.widths = (32, 64, 128, 256)  # xception_unet: channels per encoder level.
  model.upsampling = 'bilinear'  # xception_unet: bilinear | transpose
  model.alpha = 1.0  # mobilenet_v2_unet: MobileNetV2's width multiplier.
  # mobilenet_v2_unet, unet: channels per decoder level, deepest first (unet repeats the last).
  model.decoder_widths = (512, 256, 128, 64)
  # task=multilabel: a class is predicted where its probability is at or above its threshold
  # (multiples of 0.01): one for every class, one per class, or 'tune': each class's best IoU
  # on validation, chosen at every evaluation and kept beside the best model (thresholds.json).
  model.thresholds = config_dict.placeholder(object)
  model.thresholds = 0.5
  return model


def _train() -> ml_collections.ConfigDict:
  """The optimizer, schedule, loss, and the run's length and recovery."""
  train = ml_collections.ConfigDict()
  train.global_batch_size = 64
  train.epochs = 50
  train.steps_per_epoch = config_dict.placeholder(int)  # None: one full pass of the split.
  # The run's length in optimizer steps (None: train.epochs epochs), so a small set trains as
  # long as a large one; evaluation and summaries still follow the epochs.
  train.steps = config_dict.placeholder(int)
  train.steps_per_call = 1
  # >1: average the gradients of N batches per optimizer update (a global batch N times larger).
  train.gradient_accumulation_steps = 1
  train.global_clipnorm = 0.0  # >0: clip the global gradient to this norm (logged: grad_norm).
  train.ema_decay = 0.0  # >0: evaluate and export a moving average of the weights (e.g. 0.999).
  train.optimizer = 'rmsprop'  # rmsprop | adam | adamw | sgd
  train.learning_rate = 1e-3
  train.weight_decay = 0.0  # Decoupled weight decay (AdamW's); adamw only.
  # Models with an encoder: its updates are this times the learning rate's (e.g. 0.1 to
  # fine-tune a pretrained encoder gently); one optimizer.
  train.encoder_lr_multiplier = 1.0
  # The loss: terms joined by + (tasks/losses.py): cross_entropy, focal (pixel terms);
  # dice, jaccard, tversky, lovasz (segmentation's region terms), e.g. 'cross_entropy+dice'.
  train.loss = 'cross_entropy'
  train.loss_weights = ()  # One per term, in order; empty: 1 each.
  train.focal_gamma = 2.0  # focal: (1 - p)^gamma scales each pixel's term; 0 is cross-entropy.
  train.tversky_alpha = 0.3  # tversky: weight of false positives (0.5 / 0.5 is Dice).
  train.tversky_beta = 0.7  # tversky: weight of false negatives.
  # Pixel terms over each picture's hardest fraction of pixels only (OHEM); 1: all.
  train.top_k_percent_pixels = 1.0
  train.label_smoothing = 0.0  # Pixel terms: targets (1 - s) one-hot + s / classes.
  # Classification: weight each training example by n / (classes x n of its class), as Keras'
  # class_weight='balanced' does, so a minority class is not the cheap one to get wrong.
  train.balance_classes = False
  # Segmentation: per-class weights of the pixel loss: 'none' | 'auto' (median frequency
  # balancing from the training masks' pixel counts) | a tuple, one weight per class.
  train.class_weights = config_dict.placeholder(object)
  train.class_weights = 'none'
  # constant | cosine (decay to 0 over the run, after warm-up) | poly ((1 - t)^0.9, warm-up)
  train.schedule = 'constant'
  train.warmup_steps = 0
  train.checkpoint_every_steps = 100
  train.max_checkpoints_to_keep = 3
  train.log_every_steps = 10
  # A non-finite loss (or one above this bound) rolls back to the last checkpoint.
  train.loss_upper_bound = config_dict.placeholder(float)
  train.recovery_max_trials = 3
  return train


def _eval() -> ml_collections.ConfigDict:
  """Evaluation in the training loop and the continuous sidecar."""
  eval_config = ml_collections.ConfigDict()
  eval_config.global_batch_size = 64
  eval_config.every_epochs = 1  # 0: never in the loop (a --mode=continuous_eval sidecar does).
  # --mode=continuous_eval ends after this many seconds without a new checkpoint.
  eval_config.continuous_timeout_s = 600
  # What best_model.keras is best at: loss (lowest) | mean_iou, mean_dice, mean_precision,
  # mean_recall, pixel_accuracy (segmentation) or accuracy (classification) (highest).
  eval_config.best_metric = 'loss'
  # Stop after this many evaluations in a row without a better eval.best_metric (0: never);
  # the best model and the last checkpoint are kept.
  eval_config.patience = 0
  # --mode=score draws its this many worst test pictures (segmentation) into DIR/score_worst/.
  eval_config.worst_pictures = 8
  return eval_config


def _predict() -> ml_collections.ConfigDict:
  """How --mode=predict, score and export turn a model into masks (training's evaluation is
  one pass at data.image_size, or slides as predict.window and predict.stride say when
  training on crops)."""
  predict = ml_collections.ConfigDict()
  # resize: each picture resized to the model's side(s) and the masks back; slide: a window
  # slid over the picture at its own resolution, overlapping windows averaged (memory bounded
  # by the window, not the picture). Empty: slide when training on crops, else resize.
  predict.mode = ''
  # resize: probabilities averaged over these input sides (empty: data.image_size alone).
  predict.sizes = ()
  # slide: probabilities averaged over the picture scaled by each of these factors (empty: 1).
  predict.scales = ()
  predict.window = ()  # slide: (height, width); empty: the model's input size.
  predict.stride = ()  # slide: (down, across); empty: two thirds of the window.
  predict.windows_per_call = 8  # slide: windows the model answers at once.
  predict.flip = False  # Also average over mirrored pictures.
  # Also write <name>_uncertainty.png beside each mask: the answer's entropy over the largest
  # it can be, per pixel (jet: blue certain, red as unsure as can be).
  predict.uncertainty = False
  # Also write <name>_mask.geojson: each class's regions as polygons (holes kept), in a
  # GeoTIFF's own coordinates (else in pixels), simplified within predict.simplify pixels.
  predict.vectors = False
  predict.simplify = 1.0
  # Also write <name>_probabilities.tif: float32, a band per class, on a GeoTIFF's own grid.
  predict.probabilities = False
  # An exported file (--mode=export's SavedModel folder, .onnx or .tflite) that predict and
  # score run in its own runtime instead of the workdir's model; empty: the workdir's model.
  predict.artifact = ''
  return predict


def _export() -> ml_collections.ConfigDict:
  """--mode=export: the model as predict serves it (uint8 pictures in, class-id masks out),
  written to WORKDIR/export/<format>[-<quantize>]/ and checked against the model."""
  export = ml_collections.ConfigDict()
  export.format = 'saved_model'  # saved_model | onnx | litert
  export.quantize = 'none'  # none | float16 (litert) | int8 (litert, onnx)
  export.calibration_pictures = 64  # int8: training pictures that set the ranges.
  export.check_pictures = 16  # Validation pictures the export is checked on.
  # Rasters: the type of `pictures` an export takes: '' = the training set's sample type (uint8,
  # uint16 or int16; any other type, float32), or one of those, or float32.
  export.pictures_dtype = ''
  # The least agreement with the model's masks an export may have; 0: 0.99 (float formats),
  # 0.95 (int8).
  export.min_agreement = 0.0
  return export


def _runtime() -> ml_collections.ConfigDict:
  """Devices, strategy and precision."""
  runtime = ml_collections.ConfigDict()
  runtime.strategy = 'mirrored'  # mirrored | one_device | multi_worker
  runtime.precision = 'auto'  # auto | float32 | mixed_float16 | mixed_bfloat16
  runtime.jit_compile = 'auto'  # auto (on with GPUs) | on | off: XLA for forward + backward.
  runtime.cpu_devices = 0  # >0: split the host CPU into this many logical devices.
  runtime.collective = 'auto'  # multi_worker all-reduce: auto (NCCL on GPUs, ring) | ring | nccl
  runtime.collective_timeout_s = 300  # A lost worker fails the others after this (0: never).
  return runtime


def _summaries() -> ml_collections.ConfigDict:
  """What TensorBoard shows besides the losses and metrics."""
  summaries = ml_collections.ConfigDict()
  summaries.num_images = 4  # Fixed validation images shown with their masks.
  summaries.profile_steps = ()  # (first, last): a profiler trace of those steps.
  # Activations, filter patterns and Grad-CAM on those images every N epochs (0: never).
  summaries.explain_every_epochs = 5
  summaries.explain = _explain()
  return summaries


def _explain() -> ml_collections.ConfigDict:
  """Activations, filter patterns and Grad-CAM (TensorBoard and --mode=explain)."""
  explain = ml_collections.ConfigDict()
  explain.activation_layers = ()  # Layer names; empty: num_activation_layers spread by depth.
  explain.num_activation_layers = 4
  explain.filter_layers = ()  # Layer names; empty: num_filter_layers spread by depth.
  explain.num_filter_layers = 2
  explain.num_filters = 64  # The book's 8x8 grid.
  # Empty: gradcam.default_layer (classifiers: the feature map the pooling reads; segmenters:
  # the last post-ReLU feature map below the input's side, never a shortcut projection).
  explain.gradcam_layer = ''
  explain.top_classes = 0  # Classifiers: Grad-CAM of each picture's N best classes; 0: all.
  explain.class_index = ''  # 'imagenet': name class numbers by Keras' ImageNet class index.
  return explain
