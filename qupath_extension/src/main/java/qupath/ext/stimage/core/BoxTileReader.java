package qupath.ext.stimage.core;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Reads tiles given as boxes (e.g. a {@link ContextPlan}'s region and margin tiles) from any
 * source of pixels, at the model's resolution: measures their tissue and encodes them as PNG,
 * as the QuPath layer's reader does for a region's tiles, so margin tiles pass the same tissue
 * test. Thread-safe when the source is.
 */
public final class BoxTileReader implements TilePipeline.Reader {
    private static final byte[] NOT_ENCODED = new byte[0];

    /** Reads the pixels of a box. */
    @FunctionalInterface
    public interface PixelSource {
        /**
         * @param index the tile's index
         * @param x left in full-resolution pixels
         * @param y top
         * @param w width
         * @param h height
         * @param downsample full-resolution pixels per pixel read
         * @return the image, or null when there are no pixels there
         * @throws IOException when the pixels cannot be read
         */
        BufferedImage read(int index, int x, int y, int w, int h, double downsample) throws IOException;
    }

    private final List<double[]> boxes;
    private final TileGeometry geometry;
    private final int[] background;
    private final double minTissue;
    private final PixelSource source;

    /**
     * @param boxes the tiles' boxes {@code x, y, w, h} in full-resolution pixels (rounded to whole pixels when read)
     * @param geometry the model's tile geometry on this image
     * @param background the glass colour (see {@link Tissue#background})
     * @param minTissue tiles with less tissue are not encoded (the pipeline skips them)
     * @param source the pixels
     */
    public BoxTileReader(List<double[]> boxes, TileGeometry geometry, int[] background, double minTissue,
            PixelSource source) {
        this.boxes = new ArrayList<>(boxes);
        this.geometry = Objects.requireNonNull(geometry, "geometry");
        this.background = background.clone();
        this.minTissue = minTissue;
        this.source = Objects.requireNonNull(source, "source");
    }

    @Override
    public TilePipeline.Tile read(int index) throws IOException {
        double[] b = boxes.get(index);
        int x = (int) Math.round(b[0]);
        int y = (int) Math.round(b[1]);
        int w = (int) Math.round(b[2]);
        int h = (int) Math.round(b[3]);
        BufferedImage img = source.read(index, x, y, w, h, geometry.getReadDownsample());
        if (img == null) {
            return null;
        }
        img = ImageEncoding.toRgb(img);
        double tissue = Tissue.fraction(img, background);
        // glass is not sent: do not spend time encoding it
        byte[] png = tissue < minTissue ? NOT_ENCODED : ImageEncoding.png(img);
        return new TilePipeline.Tile(index, new double[] {x, y, w, h}, null, png, geometry.sentMpp(w, img.getWidth()),
                tissue);
    }
}
