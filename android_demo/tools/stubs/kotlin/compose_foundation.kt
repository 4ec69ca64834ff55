@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.compose.foundation

import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color

fun Modifier.background(color: Color): Modifier = throw RuntimeException("Stub!")
