package qupath.ext.stimage.core;

import java.awt.image.BufferedImage;
import java.util.Arrays;

/**
 * How much of a tile is tissue, measured as the backend's tissue mask does
 * (stimage.tiles._tissue): a pixel is tissue when its optical density summed over the three
 * channels, relative to the glass colour, exceeds 0.3 (pale stroma is about 0.4, background glow
 * under 0.2). The glass colour is estimated once per image from a thumbnail: the median of its
 * brightest 10% of pixels, or white when even those are dark (an image that is all tissue).
 * Unlike the backend's mask this works per pixel (no closing of gaps), so fatty or loose tissue
 * scores lower than its mask coverage; the default minimum fraction is set accordingly.
 */
public final class Tissue {
    /** Summed optical density over the background above which a pixel is tissue. */
    public static final double MIN_OD = 0.3;
    /** The glass colour assumed when the image has no bright pixels. */
    public static final int[] WHITE = {245, 245, 245};

    private static final int MAX_SAMPLES = 1 << 20;

    private Tissue() {
    }

    /**
     * The glass colour of an image: the per-channel median of its brightest 10% of pixels.
     *
     * @param thumbnail an RGB image (e.g. a thumbnail of the whole slide)
     * @return r, g, b
     */
    public static int[] background(BufferedImage thumbnail) {
        int w = thumbnail.getWidth();
        int h = thumbnail.getHeight();
        long n = (long) w * h;
        int step = (int) Math.max(1, Math.ceil(Math.sqrt((double) n / MAX_SAMPLES)));
        int[] row = new int[w];
        int m = 0;
        int[] lum = new int[(int) Math.min(n, MAX_SAMPLES * 2L)];
        int[] rgbs = new int[lum.length];
        for (int y = 0; y < h; y += step) {
            thumbnail.getRGB(0, y, w, 1, row, 0, w);
            for (int x = 0; x < w && m < lum.length; x += step) {
                int p = row[x];
                rgbs[m] = p;
                lum[m++] = ((p >> 16) & 0xFF) + ((p >> 8) & 0xFF) + (p & 0xFF);
            }
        }
        if (m == 0) {
            return WHITE.clone();
        }
        int[] sorted = Arrays.copyOf(lum, m);
        Arrays.sort(sorted);
        int cut = sorted[(int) Math.min(m - 1, Math.floor(0.9 * (m - 1)))];
        int[][] ch = new int[3][m];
        int k = 0;
        for (int i = 0; i < m; i++) {
            if (lum[i] >= cut) {
                ch[0][k] = (rgbs[i] >> 16) & 0xFF;
                ch[1][k] = (rgbs[i] >> 8) & 0xFF;
                ch[2][k] = rgbs[i] & 0xFF;
                k++;
            }
        }
        int[] bg = new int[3];
        for (int c = 0; c < 3; c++) {
            int[] v = Arrays.copyOf(ch[c], k);
            Arrays.sort(v);
            bg[c] = k % 2 == 1 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2] + 1) / 2;
        }
        if ((bg[0] + bg[1] + bg[2]) / 3.0 < 200.0) {
            return WHITE.clone();
        }
        return bg;
    }

    /**
     * @param image an RGB tile
     * @param background the glass colour (from {@link #background(BufferedImage)})
     * @return the fraction of its pixels that are tissue, 0-1
     */
    public static double fraction(BufferedImage image, int[] background) {
        // A pixel is tissue when sum_c max(0, -ln(v_c / bg_c)) > MIN_OD; tabulate per channel.
        double[][] od = new double[3][256];
        for (int c = 0; c < 3; c++) {
            double bg = Math.max(1, background[c]);
            for (int v = 0; v < 256; v++) {
                od[c][v] = Math.max(0.0, -Math.log(Math.max(1, v) / bg));
            }
        }
        int w = image.getWidth();
        int h = image.getHeight();
        int[] row = new int[w];
        long tissue = 0;
        for (int y = 0; y < h; y++) {
            image.getRGB(0, y, w, 1, row, 0, w);
            for (int x = 0; x < w; x++) {
                int p = row[x];
                if (od[0][(p >> 16) & 0xFF] + od[1][(p >> 8) & 0xFF] + od[2][p & 0xFF] > MIN_OD) {
                    tissue++;
                }
            }
        }
        return (double) tissue / ((long) w * h);
    }
}
