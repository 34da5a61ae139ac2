package qupath.ext.stimage.qp;

import qupath.ext.stimage.core.ImageEncoding;
import qupath.ext.stimage.core.TileGeometry;
import qupath.ext.stimage.core.TilePipeline;
import qupath.ext.stimage.core.Tissue;
import qupath.lib.images.servers.ImageServer;
import qupath.lib.regions.RegionRequest;
import qupath.lib.roi.interfaces.ROI;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.util.List;

/**
 * Reads model tiles through QuPath's ImageServer at the model's resolution (a RegionRequest
 * with downsample = model µm/px / image µm/px), measures their tissue and encodes them as PNG.
 * Thread-safe (ImageServer reads are).
 */
final class ServerTileReader implements TilePipeline.Reader {
    private static final byte[] NOT_ENCODED = new byte[0];

    private final ImageServer<BufferedImage> server;
    private final List<ROI> tiles;
    private final TileGeometry geometry;
    private final int[] background;
    private final double minTissue;

    ServerTileReader(ImageServer<BufferedImage> server, List<ROI> tiles, TileGeometry geometry, int[] background,
            double minTissue) {
        this.server = server;
        this.tiles = tiles;
        this.geometry = geometry;
        this.background = background.clone();
        this.minTissue = minTissue;
    }

    @Override
    public TilePipeline.Tile read(int index) throws IOException {
        ROI roi = tiles.get(index);
        int x = (int) Math.round(roi.getBoundsX());
        int y = (int) Math.round(roi.getBoundsY());
        int w = (int) Math.round(roi.getBoundsWidth());
        int h = (int) Math.round(roi.getBoundsHeight());
        RegionRequest request = RegionRequest.createInstance(server.getPath(), geometry.getReadDownsample(), x, y, w,
                h, roi.getZ(), roi.getT());
        BufferedImage img = server.readRegion(request);
        if (img == null) {
            return null;
        }
        img = ImageEncoding.toRgb(img);
        double tissue = Tissue.fraction(img, background);
        // glass is skipped by the pipeline: do not spend time encoding it
        byte[] png = tissue < minTissue ? NOT_ENCODED : ImageEncoding.png(img);
        return new TilePipeline.Tile(index, new double[] {x, y, w, h}, null, png,
                geometry.sentMpp(w, img.getWidth()), tissue);
    }
}
