"""diffrecon.registration: ANTs (antspyx) registration of MR images, warping of other images with it, quality
control, and personalised pseudo-PET training sets (:mod:`.pseudo_pet`)."""
