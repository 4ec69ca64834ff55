@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.compose.ui

interface Modifier {
    companion object : Modifier
}

interface Alignment {
    interface Vertical

    interface Horizontal

    companion object {
        val Center: Alignment get() = throw RuntimeException("Stub!")
        val CenterVertically: Vertical get() = throw RuntimeException("Stub!")
    }
}
