package qupath.ext.stimage.core;

/**
 * The three things the extension asks the backend for, and which earlier objects a new run of
 * each replaces. A run replaces only objects that carry an STImage id (see {@link StimageIds})
 * and are of the kind that operation makes: predicting again replaces the tiles (and with them
 * the nuclei explained under them), detecting cells again replaces the cells, explaining a tile
 * again replaces its nuclei. The user's own objects, and STImage objects of the other operations,
 * are never touched.
 */
public enum Operation {
    /** Gene expression per tile ({@code predict}): STImage tiles under the annotation. */
    PREDICT("predict", "Predict expression", ObjectKind.TILE),
    /** Cell segmentation and typing ({@code cells}): STImage cells under the annotation. */
    CELLS("cells", "Detect cells", ObjectKind.CELL),
    /** LIME scores per nucleus ({@code explain}): STImage detections under the tile. */
    EXPLAIN("explain", "Explain tile", ObjectKind.DETECTION);

    private final String op;
    private final String title;
    private final ObjectKind kind;

    Operation(String op, String title, ObjectKind kind) {
        this.op = op;
        this.title = title;
        this.kind = kind;
    }

    /** @return the protocol op name */
    public String getOp() {
        return op;
    }

    /** @return the menu title (without the ellipsis) */
    public String getTitle() {
        return title;
    }

    /** @return the kind of object this operation makes */
    public ObjectKind getKind() {
        return kind;
    }

    /**
     * Whether a new run replaces an existing object found below the run's parent object.
     *
     * @param kind the object's kind
     * @param id the object's id as text (may be null)
     * @return true for STImage objects of the kind this operation makes
     */
    public boolean replaces(ObjectKind kind, String id) {
        return kind == this.kind && StimageIds.isStimage(id);
    }
}
