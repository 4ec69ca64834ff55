@file:Suppress("unused")

package androidx.compose.ui.text.font

abstract class FontFamily {
    companion object {
        val Monospace: FontFamily get() = throw RuntimeException("Stub!")
    }
}
