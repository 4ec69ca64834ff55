@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.compose.ui.graphics

@JvmInline
value class Color(val value: ULong) {
    companion object {
        val Black: Color get() = throw RuntimeException("Stub!")
        val White: Color get() = throw RuntimeException("Stub!")
        val Unspecified: Color get() = throw RuntimeException("Stub!")
    }
}

fun Color(color: Long): Color = throw RuntimeException("Stub!")
