package dev.basisnet.demo

import android.graphics.Bitmap
import android.graphics.Matrix
import androidx.camera.core.ImageProxy

/** One upright camera frame as packed ARGB pixels: what the core's Preprocessor takes. */
class Frame(val argb: IntArray, val width: Int, val height: Int)

/** RGBA_8888 analysis output (ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888), rotated upright. */
fun ImageProxy.toFrame(): Frame {
    val bitmap = toBitmap()
    val degrees = imageInfo.rotationDegrees
    val upright = if (degrees == 0) {
        bitmap
    } else {
        val m = Matrix().apply { postRotate(degrees.toFloat()) }
        Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, m, false)
    }
    val pixels = IntArray(upright.width * upright.height)
    upright.getPixels(pixels, 0, upright.width, 0, 0, upright.width, upright.height)
    return Frame(pixels, upright.width, upright.height)
}
