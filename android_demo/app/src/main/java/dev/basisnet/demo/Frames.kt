package dev.basisnet.demo

import androidx.camera.core.ImageProxy
import dev.basisnet.core.FramePool
import dev.basisnet.core.PixelFrame
import dev.basisnet.core.RgbaFrames

/**
 * RGBA_8888 analysis output (ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888) to an upright frame in
 * a pooled buffer: one copy, no Bitmap, no per-frame allocation (the core does the rotation).
 */
fun ImageProxy.toPixelFrame(pool: FramePool): PixelFrame {
    val plane = planes[0]
    return RgbaFrames.upright(plane.buffer, width, height, plane.rowStride, imageInfo.rotationDegrees, pool)
}
