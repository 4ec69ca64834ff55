@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.compose.ui.text

import androidx.compose.ui.graphics.Color
import androidx.compose.ui.text.font.FontFamily

class TextStyle {
    fun copy(color: Color = Color.Unspecified, fontFamily: FontFamily? = null): TextStyle = throw RuntimeException("Stub!")

    companion object {
        val Default: TextStyle get() = throw RuntimeException("Stub!")
    }
}
