@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.compose.material3

import androidx.compose.foundation.layout.RowScope
import androidx.compose.runtime.Composable
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.text.TextStyle

private fun stub(): Nothing = throw RuntimeException("Stub!")

class Typography {
    val headlineMedium: TextStyle get() = stub()
    val bodyMedium: TextStyle get() = stub()
    val bodySmall: TextStyle get() = stub()
}

object MaterialTheme {
    val typography: Typography
        @Composable get() = stub()
}

@Composable
fun MaterialTheme(content: @Composable () -> Unit): Unit = stub()

@Composable
fun Text(text: String, modifier: Modifier = Modifier, color: Color = Color.Unspecified, style: TextStyle = TextStyle.Default): Unit = stub()

@Composable
fun Surface(modifier: Modifier = Modifier, color: Color = Color.Unspecified, content: @Composable () -> Unit): Unit = stub()

@Composable
fun Button(onClick: () -> Unit, modifier: Modifier = Modifier, content: @Composable RowScope.() -> Unit): Unit = stub()

@Composable
fun FilterChip(selected: Boolean, onClick: () -> Unit, label: @Composable () -> Unit, modifier: Modifier = Modifier): Unit = stub()

@Composable
fun Slider(
    value: Float,
    onValueChange: (Float) -> Unit,
    modifier: Modifier = Modifier,
    valueRange: ClosedFloatingPointRange<Float> = 0f..1f,
): Unit = stub()

@Composable
fun Switch(checked: Boolean, onCheckedChange: ((Boolean) -> Unit)?, modifier: Modifier = Modifier): Unit = stub()
