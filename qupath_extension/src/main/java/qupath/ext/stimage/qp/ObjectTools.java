package qupath.ext.stimage.qp;

import com.google.gson.JsonObject;
import qupath.ext.stimage.core.Features;
import qupath.ext.stimage.core.ObjectKind;
import qupath.ext.stimage.core.Operation;
import qupath.ext.stimage.core.Region;
import qupath.ext.stimage.core.StimageException;
import qupath.ext.stimage.core.StimageIds;
import qupath.lib.images.ImageData;
import qupath.lib.io.GsonTools;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.hierarchy.PathObjectHierarchy;
import qupath.lib.roi.interfaces.ROI;

import java.awt.image.BufferedImage;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;

/**
 * QuPath objects in and out: reading the backend's GeoJSON with QuPath's own reader
 * ({@code GsonTools.parseObjectsFromGeoJSON}, which keeps ids, classes, measurements and nuclei),
 * choosing the annotations a run covers, and replacing earlier STImage objects under a parent.
 */
public final class ObjectTools {
    private ObjectTools() {
    }

    /**
     * @param pathObject an object
     * @return its kind
     */
    public static ObjectKind kind(PathObject pathObject) {
        if (pathObject.isCell()) {
            return ObjectKind.CELL;
        }
        if (pathObject.isTile()) {
            return ObjectKind.TILE;
        }
        if (pathObject.isDetection()) {
            return ObjectKind.DETECTION;
        }
        if (pathObject.isAnnotation()) {
            return ObjectKind.ANNOTATION;
        }
        return ObjectKind.OTHER;
    }

    /**
     * @param pathObject an object
     * @return whether STImage wrote it (its id has the STImage prefix)
     */
    public static boolean isStimage(PathObject pathObject) {
        return StimageIds.isStimage(pathObject.getID());
    }

    /**
     * @param featureCollection GeoJSON from the backend
     * @return the objects, as QuPath's GeoJSON import makes them
     */
    public static List<PathObject> parse(JsonObject featureCollection) {
        return GsonTools.parseObjectsFromGeoJSON(featureCollection);
    }

    /**
     * The earlier objects of an operation directly under a parent: STImage ids, of the kind the
     * operation makes. The user's objects and other operations' objects are never included.
     *
     * @param parent an annotation (predict, cells) or a tile (explain)
     * @param operation the operation about to run
     * @return the objects a new run replaces
     */
    public static List<PathObject> replaced(PathObject parent, Operation operation) {
        List<PathObject> out = new ArrayList<>();
        for (PathObject child : parent.getChildObjects()) {
            if (operation.replaces(kind(child), child.getID() == null ? null : child.getID().toString())) {
                out.add(child);
            }
        }
        return out;
    }

    /**
     * Replaces the earlier objects of an operation under a parent with new ones, firing one
     * hierarchy event.
     *
     * @param hierarchy the image's hierarchy
     * @param parent the parent
     * @param operation the operation
     * @param added the new objects
     * @return how many earlier objects were removed, counting the objects under them (the nuclei that
     *     Explain tile put under a tile go with the tile)
     */
    public static int replaceChildren(PathObjectHierarchy hierarchy, PathObject parent, Operation operation,
            Collection<PathObject> added) {
        List<PathObject> old = replaced(parent, operation);
        int removed = 0;
        if (!old.isEmpty()) {
            removed = countWithDescendants(old);
            hierarchy.getSelectionModel().deselectObjects(old);
            parent.removeChildObjects(old);
        }
        parent.addChildObjects(added);
        hierarchy.fireHierarchyChangedEvent(ObjectTools.class, parent);
        return removed;
    }

    private static int countWithDescendants(Collection<PathObject> objects) {
        int n = 0;
        for (PathObject o : objects) {
            n += 1 + countWithDescendants(o.getChildObjects());
        }
        return n;
    }

    /**
     * The annotations a run covers.
     *
     * @param imageData the image
     * @param region which part
     * @param version the extension version (for a new region annotation's metadata)
     * @return annotations (with area ROIs), never empty
     * @throws StimageException when there is nothing to cover
     */
    public static List<PathObject> parents(ImageData<BufferedImage> imageData, Region region, String version)
            throws StimageException {
        PathObjectHierarchy h = imageData.getHierarchy();
        List<PathObject> out = new ArrayList<>();
        if (region == Region.SELECTED) {
            for (PathObject p : h.getSelectionModel().getSelectedObjects()) {
                if (p.isAnnotation() && p.getROI() != null && p.getROI().isArea()) {
                    out.add(p);
                }
            }
            if (out.isEmpty()) {
                out.add(regionAnnotation(imageData, version));
            }
        } else if (region == Region.ANNOTATIONS) {
            for (PathObject p : h.getAnnotationObjects()) {
                if (!isStimage(p) && p.getROI() != null && p.getROI().isArea()) {
                    out.add(p);
                }
            }
            if (out.isEmpty()) {
                throw new StimageException("No annotations", "This image has no area annotations to run on. "
                        + "Draw one around the tissue, or run on the whole image (region 'image').");
            }
        } else {
            out.add(regionAnnotation(imageData, version));
        }
        return out;
    }

    /**
     * The locked "STImage region" annotation over the whole image: the one an earlier run made,
     * or a new one added to the hierarchy.
     *
     * @param imageData the image
     * @param version the extension version
     * @return the annotation
     */
    public static PathObject regionAnnotation(ImageData<BufferedImage> imageData, String version) {
        int w = imageData.getServer().getWidth();
        int h = imageData.getServer().getHeight();
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        for (PathObject p : hierarchy.getAnnotationObjects()) {
            ROI r = p.getROI();
            if (isStimage(p) && Features.REGION_NAME.equals(p.getName()) && r != null && r.getBoundsX() == 0
                    && r.getBoundsY() == 0 && r.getBoundsWidth() == w && r.getBoundsHeight() == h) {
                return p;
            }
        }
        JsonObject f = Features.regionAnnotation(0, 0, w, h, version);
        JsonObject fc = new JsonObject();
        fc.addProperty("type", "FeatureCollection");
        com.google.gson.JsonArray a = new com.google.gson.JsonArray();
        a.add(f);
        fc.add("features", a);
        PathObject region = parse(fc).get(0);
        hierarchy.addObject(region, true);
        return region;
    }
}
