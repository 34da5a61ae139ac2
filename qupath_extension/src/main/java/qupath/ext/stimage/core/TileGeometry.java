package qupath.ext.stimage.core;

/**
 * The arithmetic of model tiles on an image: a model wants square tiles of {@code tileUm} µm,
 * resized to {@code tilePx} pixels (hello's {@code tile_um}, {@code tile_px}), so its native
 * resolution is {@code tileUm / tilePx} µm per pixel. The extension tiles the image in
 * full-resolution pixels ({@code tileUm / pixel size}) and reads each tile at the model's
 * resolution (downsample = model µm/px / image µm/px), which sends the least data; the µm per
 * pixel sent is then computed from the image actually read, so it is exact whatever rounding the
 * reader did.
 */
public final class TileGeometry {
    private final double tileUm;
    private final int tilePx;
    private final PixelSize pixelSize;

    /**
     * @param tileUm the model's tile side in µm
     * @param tilePx the model's input side in pixels
     * @param pixelSize the image's full-resolution pixel size
     */
    public TileGeometry(double tileUm, int tilePx, PixelSize pixelSize) {
        if (!(tileUm > 0) || Double.isInfinite(tileUm) || tilePx <= 0) {
            throw new IllegalArgumentException("a model tile needs a positive size; got " + tileUm + " µm, "
                    + tilePx + " px");
        }
        this.tileUm = tileUm;
        this.tilePx = tilePx;
        this.pixelSize = pixelSize;
    }

    /** @return the model's µm per pixel, {@code tileUm / tilePx} */
    public double getModelMpp() {
        return tileUm / tilePx;
    }

    /** @return the tile width in full-resolution pixels (at least 1) */
    public int getTileWidthPx() {
        return Math.max(1, (int) Math.round(tileUm / pixelSize.getWidthUm()));
    }

    /** @return the tile height in full-resolution pixels (at least 1) */
    public int getTileHeightPx() {
        return Math.max(1, (int) Math.round(tileUm / pixelSize.getHeightUm()));
    }

    /**
     * @return the downsample at which to read tiles so they come out at about the model's
     *     resolution (below 1 when the image is coarser than the model: tiles are then upsampled)
     */
    public double getReadDownsample() {
        return getModelMpp() / pixelSize.getAveragedUm();
    }

    /**
     * The µm per pixel of a tile image as read: its box's physical width over the image's width.
     *
     * @param boxWidthPx the box width in full-resolution pixels
     * @param imageWidthPx the width of the image read
     * @return µm per pixel of the image sent
     */
    public double sentMpp(double boxWidthPx, int imageWidthPx) {
        return boxWidthPx * pixelSize.getWidthUm() / imageWidthPx;
    }

    /**
     * Whether an image of a box, at a given µm per pixel, covers the model's tile within a
     * tolerance (what the backend checks, else {@code wrong_scale}).
     *
     * @param widthPx image width
     * @param heightPx image height
     * @param mpp µm per pixel of the image
     * @param tolerance relative tolerance (hello's {@code scale_tolerance}, 0.05)
     * @return whether both sides are within the tolerance of {@code tileUm}
     */
    public boolean coversTile(int widthPx, int heightPx, double mpp, double tolerance) {
        return Math.abs(widthPx * mpp - tileUm) <= tolerance * tileUm
                && Math.abs(heightPx * mpp - tileUm) <= tolerance * tileUm;
    }

    /**
     * Whether a box in full-resolution pixels is one model tile of this image (within a tolerance),
     * e.g. to check that a selected object can be explained.
     *
     * @param width box width in full-resolution pixels
     * @param height box height
     * @param tolerance relative tolerance
     * @return whether the box is {@code tileUm} square within the tolerance
     */
    public boolean isTileBox(double width, double height, double tolerance) {
        return Math.abs(width * pixelSize.getWidthUm() - tileUm) <= tolerance * tileUm
                && Math.abs(height * pixelSize.getHeightUm() - tileUm) <= tolerance * tileUm;
    }

    /**
     * Whether a box lies inside the image (tiles reaching out of it would be padded with black,
     * which is neither tissue nor glass).
     *
     * @param x left
     * @param y top
     * @param w width
     * @param h height
     * @param imageWidth full-resolution image width
     * @param imageHeight full-resolution image height
     * @return whether the box is within {@code [0, imageWidth] x [0, imageHeight]}
     */
    public static boolean insideImage(double x, double y, double w, double h, int imageWidth, int imageHeight) {
        return x >= 0 && y >= 0 && x + w <= imageWidth && y + h <= imageHeight;
    }

    /** @return the model's tile side in µm */
    public double getTileUm() {
        return tileUm;
    }

    /** @return the model's input side in pixels */
    public int getTilePx() {
        return tilePx;
    }

    /** @return the image's pixel size */
    public PixelSize getPixelSize() {
        return pixelSize;
    }
}
