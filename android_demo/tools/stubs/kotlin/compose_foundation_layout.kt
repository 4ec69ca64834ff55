@file:Suppress("unused", "UNUSED_PARAMETER")

package androidx.compose.foundation.layout

import androidx.compose.runtime.Composable
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.Dp

private fun stub(): Nothing = throw RuntimeException("Stub!")

object Arrangement {
    interface Horizontal

    interface Vertical

    interface HorizontalOrVertical : Horizontal, Vertical

    val Top: Vertical get() = stub()
    val Start: Horizontal get() = stub()
    val Center: HorizontalOrVertical get() = stub()
    val SpaceBetween: HorizontalOrVertical get() = stub()

    fun spacedBy(space: Dp): HorizontalOrVertical = stub()
}

interface BoxScope

interface ColumnScope

interface RowScope {
    fun Modifier.weight(weight: Float, fill: Boolean = true): Modifier
}

@Composable
inline fun Box(modifier: Modifier = Modifier, content: @Composable BoxScope.() -> Unit): Unit = throw RuntimeException("Stub!")

@Composable
inline fun Column(
    modifier: Modifier = Modifier,
    verticalArrangement: Arrangement.Vertical = Arrangement.Top,
    content: @Composable ColumnScope.() -> Unit,
): Unit = throw RuntimeException("Stub!")

@Composable
inline fun Row(
    modifier: Modifier = Modifier,
    horizontalArrangement: Arrangement.Horizontal = Arrangement.Start,
    verticalAlignment: Alignment.Vertical = Alignment.CenterVertically,
    content: @Composable RowScope.() -> Unit,
): Unit = throw RuntimeException("Stub!")

fun Modifier.fillMaxSize(fraction: Float = 1f): Modifier = stub()

fun Modifier.fillMaxWidth(fraction: Float = 1f): Modifier = stub()

fun Modifier.padding(all: Dp): Modifier = stub()

fun Modifier.safeDrawingPadding(): Modifier = stub()
