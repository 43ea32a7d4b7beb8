-- +goose Up
-- Public read contract for mobile-api: a farmer's orders as the farmer's
-- agent shows them on the phone (an order the distributor placed for the
-- farmer, which the agent must tell them about and later prove delivered;
-- what became of the agent's own orders). Erased farmers' orders are kept
-- under a pseudonym, which no agent serves: they are left out anyway.
CREATE VIEW marketplace.farmer_orders AS
SELECT o.order_id, o.farmer_id, o.distributor_id, o.source, o.status, o.reject_reason, o.payment, o.voucher_id, o.currency, o.total,
       o.placed_at, o.updated_at,
       (SELECT jsonb_agg(jsonb_build_object('product_id', l.product_id, 'name', p.name, 'category', p.category, 'pack_size', p.pack_size,
                                            'pack_unit', p.pack_unit, 'quantity', l.quantity, 'delivered', l.delivered, 'unit_price', l.unit_price)
                         ORDER BY l.line)
        FROM marketplace.order_lines l JOIN marketplace.products p USING (product_id) WHERE l.order_id = o.order_id) AS lines
FROM marketplace.orders o
WHERE NOT o.farmer_erased;

-- +goose Down
DROP VIEW marketplace.farmer_orders;
