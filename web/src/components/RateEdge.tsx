import { memo } from 'react';
import { BaseEdge, EdgeLabelRenderer, getBezierPath, type Edge, type EdgeProps } from '@xyflow/react';
import { formatRate } from '../format';

export type RateEdgeData = {
  source: string;
  edgeId: string;
  /** Messages per second into the edge's target port. */
  rate?: number;
  /** Whether the target maps what arrives along this edge. */
  mapped: boolean;
  onSelect: () => void;
};

function RateEdgeImpl(props: EdgeProps<Edge<RateEdgeData, 'rate'>>) {
  const { id, sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition, data, selected, markerEnd } = props;
  const [path, labelX, labelY] = getBezierPath({ sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition });
  const active = (data?.rate ?? 0) > 0;
  return (
    <>
      <BaseEdge
        id={id}
        path={path}
        markerEnd={markerEnd}
        className={`rate-edge${active ? ' active' : ''}${selected ? ' selected' : ''}`}
        interactionWidth={16}
      />
      {data && (
        <EdgeLabelRenderer>
          <div
            className={`edge-label nodrag nopan${selected ? ' selected' : ''}${active ? ' active' : ''}`}
            data-testid={`edge-${data.source}-${data.edgeId}`}
            title={`${data.source} · ${data.edgeId}${data.mapped ? ' (mapped)' : ''}`}
            style={{ transform: `translate(-50%, -50%) translate(${labelX}px, ${labelY}px)` }}
            onClick={(e) => {
              e.stopPropagation();
              data.onSelect();
            }}
          >
            {formatRate(data.rate)} msg/s
            {data.mapped && <span className="mapped-mark" title="mapped"> ƒ</span>}
          </div>
        </EdgeLabelRenderer>
      )}
    </>
  );
}

export const RateEdge = memo(RateEdgeImpl);
