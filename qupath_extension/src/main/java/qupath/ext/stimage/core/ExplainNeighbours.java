package qupath.ext.stimage.core;

import qupath.ext.stimage.client.CancelToken;
import qupath.ext.stimage.client.ErrorCodes;
import qupath.ext.stimage.client.ServerException;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * The neighbours of a tile to explain with a model of spatial context (hello's {@code
 * context_um} above 0): the tissue tiles of the tile's grid within the context's reach, read as
 * Predict reads a region's margin (a {@link ContextPlan} of the one tile, a {@link BoxTileReader}
 * at the model's resolution, the same minimum tissue). Sent with the tile as {@code explain}'s
 * {@code neighbours}, they make the explained prediction the tile's prediction with context,
 * the "GENE: mean" Predict put on the tile.
 *
 * <pre>{@code
 * List<TilePipeline.Tile> n = ExplainNeighbours.read(new double[] {x, y, w, h}, geometry, model.getContextUm(),
 *         width, height, maxTiles, background, 0.25, (i, bx, by, bw, bh, ds) -> readRegion(...), cancel);
 * }</pre>
 */
public final class ExplainNeighbours {
    private ExplainNeighbours() {
    }

    /**
     * Reads the neighbours of a tile.
     *
     * @param tile the explained tile's box {@code x, y, w, h} in full-resolution pixels (one model tile)
     * @param geometry the model's tile geometry on this image
     * @param contextUm the model's context reach in µm (above 0)
     * @param imageWidth full-resolution image width
     * @param imageHeight full-resolution image height
     * @param maxTiles most tiles of one request, the tile included (hello's {@code max_tiles}): as in
     *     Predict, only a smaller limit than the tile and its neighbours cuts them to the nearest
     * @param background the glass colour (see {@link Tissue#background})
     * @param minTissue neighbours with less tissue are left out
     * @param source the pixels
     * @param cancel cancel token, or null
     * @return the neighbours on tissue, row by row (their boxes on the tile's grid, their images PNG at
     *     the model's resolution)
     * @throws IOException when pixels cannot be read
     * @throws ServerException {@code cancelled} when the token is cancelled
     */
    public static List<TilePipeline.Tile> read(double[] tile, TileGeometry geometry, double contextUm,
            int imageWidth, int imageHeight, int maxTiles, int[] background, double minTissue,
            BoxTileReader.PixelSource source, CancelToken cancel) throws IOException, ServerException {
        Objects.requireNonNull(tile, "tile");
        ContextPlan plan = ContextPlan.build(List.of(List.of(tile)), geometry.getTileUm(), contextUm, imageWidth,
                imageHeight, maxTiles);
        BoxTileReader reader = new BoxTileReader(plan.getTiles(), geometry, background, minTissue, source);
        List<TilePipeline.Tile> out = new ArrayList<>();
        // one request: the tile predicted, its neighbours (cut to max_tiles) as context
        for (ContextPlan.Request q : plan.getRequests()) {
            for (int i : q.getContext()) {
                if (cancel != null && cancel.isCancelled()) {
                    throw new ServerException(ErrorCodes.CANCELLED, "cancelled by the user");
                }
                TilePipeline.Tile t = reader.read(i);
                if (t != null && t.getTissue() >= minTissue) {
                    out.add(t);
                }
            }
        }
        return out;
    }
}
