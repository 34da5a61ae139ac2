package qupath.ext.stimage.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Splits a region into pieces small enough to send (the backend takes images of at most
 * {@code max_tile_px} a side and {@code max_frame_bytes}): a grid of cores that cover the region
 * exactly, each read with a margin around it so that nuclei on a core's border are segmented
 * whole in at least one piece. A cell belongs to the piece whose core holds its centroid, so
 * every nucleus is kept once.
 */
public final class RegionChunks {
    /** Default margin around a core, in full-resolution pixels (a few nuclei wide at 0.25-1 µm/px). */
    public static final int DEFAULT_MARGIN_PX = 64;

    /** One piece: the core it owns and the (larger) area read, both in full-resolution pixels. */
    public static final class Chunk {
        private final int coreX;
        private final int coreY;
        private final int coreW;
        private final int coreH;
        private final int readX;
        private final int readY;
        private final int readW;
        private final int readH;

        Chunk(int coreX, int coreY, int coreW, int coreH, int readX, int readY, int readW, int readH) {
            this.coreX = coreX;
            this.coreY = coreY;
            this.coreW = coreW;
            this.coreH = coreH;
            this.readX = readX;
            this.readY = readY;
            this.readW = readW;
            this.readH = readH;
        }

        /**
         * Whether a point belongs to this piece: inside its core, left and top edges included.
         *
         * @param x full-resolution x
         * @param y full-resolution y
         * @return whether the core owns it
         */
        public boolean owns(double x, double y) {
            return x >= coreX && y >= coreY && x < coreX + coreW && y < coreY + coreH;
        }

        /** @return left of the area read */
        public int getReadX() {
            return readX;
        }

        /** @return top of the area read */
        public int getReadY() {
            return readY;
        }

        /** @return width of the area read */
        public int getReadWidth() {
            return readW;
        }

        /** @return height of the area read */
        public int getReadHeight() {
            return readH;
        }

        /** @return x, y, w, h of the core */
        public int[] getCore() {
            return new int[] {coreX, coreY, coreW, coreH};
        }

        @Override
        public String toString() {
            return "Chunk[core " + coreX + "," + coreY + " " + coreW + "x" + coreH + ", read " + readX + "," + readY
                    + " " + readW + "x" + readH + "]";
        }
    }

    private RegionChunks() {
    }

    /**
     * @param x region left (full-resolution pixels)
     * @param y region top
     * @param w region width
     * @param h region height
     * @param core side of a core (the last ones in a row or column are smaller)
     * @param margin margin read around each core, clipped to the image
     * @param imageWidth image width
     * @param imageHeight image height
     * @return the pieces, row by row; empty when the region misses the image
     */
    public static List<Chunk> split(int x, int y, int w, int h, int core, int margin, int imageWidth,
            int imageHeight) {
        if (core < 1 || margin < 0) {
            throw new IllegalArgumentException("core must be positive and margin not negative; got " + core + ", "
                    + margin);
        }
        int x0 = Math.max(0, x);
        int y0 = Math.max(0, y);
        int x1 = Math.min(imageWidth, x + w);
        int y1 = Math.min(imageHeight, y + h);
        if (x1 <= x0 || y1 <= y0) {
            return Collections.emptyList();
        }
        List<Chunk> out = new ArrayList<>();
        for (int cy = y0; cy < y1; cy += core) {
            int ch = Math.min(core, y1 - cy);
            for (int cx = x0; cx < x1; cx += core) {
                int cw = Math.min(core, x1 - cx);
                int rx = Math.max(0, cx - margin);
                int ry = Math.max(0, cy - margin);
                int rx1 = Math.min(imageWidth, cx + cw + margin);
                int ry1 = Math.min(imageHeight, cy + ch + margin);
                out.add(new Chunk(cx, cy, cw, ch, rx, ry, rx1 - rx, ry1 - ry));
            }
        }
        return out;
    }

    /**
     * The downsample at which a piece fits the backend's largest image side.
     *
     * @param readW width read
     * @param readH height read
     * @param maxSidePx hello's {@code max_tile_px}
     * @return 1, or more when the piece is larger than the limit
     */
    public static double downsampleToFit(int readW, int readH, int maxSidePx) {
        int side = Math.max(readW, readH);
        return side <= maxSidePx ? 1.0 : (double) side / maxSidePx;
    }
}
